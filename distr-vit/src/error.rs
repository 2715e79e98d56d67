//! Errors of model construction and the forward pass.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use distr_attn::DistrAttentionError;

/// Why a model could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum VitError {
    /// The attention op or module refused its configuration or input.
    #[error(transparent)]
    Attention(#[from] DistrAttentionError),
    /// A configuration value is out of range.
    #[error("invalid config `{name}` = {value}: expected {expected}")]
    Config {
        name: &'static str,
        value: String,
        expected: String,
    },
    /// The input images do not fit the model.
    #[error("input images have shape {actual:?}: expected [batch, {channels}, height, width] with batch at least 1 and height and width at least {patch_size}")]
    InputShape {
        actual: [usize; 4],
        channels: usize,
        patch_size: usize,
    },
    /// A tensor's values could not be read back.
    #[error("reading tensor values: {0}")]
    Data(String),
}

/// A tensor's values on the host as `f32`, whatever its float type (`--dtype f16` models
/// included).
pub fn to_f32<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Result<Vec<f32>, VitError> {
    tensor
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|error| VitError::Data(format!("{error:?}")))
}
