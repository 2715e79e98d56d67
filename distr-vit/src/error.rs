//! Errors of model construction and the forward pass.

use distr_attn::DistrAttentionError;

/// Why a model could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum VitError {
    /// The attention op or module refused its configuration or input.
    #[error("attention: {0}")]
    Attention(#[from] DistrAttentionError),
    /// A configuration value is out of range.
    #[error("invalid config `{name}` = {value}: expected {expected}")]
    Config {
        name: &'static str,
        value: String,
        expected: String,
    },
    /// The input images do not fit the model.
    #[error("input images have shape {actual:?}: expected [batch, {channels}, height, width] with height and width at least {patch_size}")]
    InputShape {
        actual: [usize; 4],
        channels: usize,
        patch_size: usize,
    },
}
