//! Errors of the DistrAttention op, module and configurations.

use std::path::PathBuf;

/// Why a call to [`distr_attention`](crate::distr_attention) or a module was refused.
///
/// Every variant names the offending value and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DistrAttentionError {
    /// A parameter of the configuration is out of range.
    #[error("invalid parameter `{name}` = {value}: {expected}")]
    InvalidParameter {
        name: &'static str,
        value: String,
        expected: String,
    },
    /// Tensor shapes do not fit together.
    #[error("shape mismatch: {tensor} has shape {actual:?}, expected {expected}")]
    Shape {
        tensor: &'static str,
        actual: Vec<usize>,
        expected: String,
    },
    /// The head dimension is not a multiple of `group_size`.
    #[error("head_dim {head_dim} is not divisible by group_size {group_size}")]
    GroupSize { head_dim: usize, group_size: usize },
    /// Query heads are not a multiple of key/value heads.
    #[error("heads {heads} is not a multiple of kv_heads {kv_heads}")]
    KvHeads { heads: usize, kv_heads: usize },
    /// A sequence, batch or head count is zero.
    #[error("empty input: {tensor} has shape {shape:?}")]
    Empty {
        tensor: &'static str,
        shape: Vec<usize>,
    },
    /// The tensor's element type is not supported.
    #[error("unsupported dtype {dtype} for {tensor}: expected f32, f16, bf16 or f64")]
    DType { tensor: &'static str, dtype: String },
    /// A configuration file could not be read or does not hold a valid configuration.
    #[error("attention config `{path}`: {message}")]
    ConfigFile { path: PathBuf, message: String },
    /// One layer of a model's attention plan does not fit that layer.
    #[error("attention of layer {layer}: {source}")]
    Layer {
        layer: usize,
        source: Box<DistrAttentionError>,
    },
    /// One query head's entry of a per-head plan does not fit that head.
    #[error("attention of head {head}: {source}")]
    Head {
        head: usize,
        source: Box<DistrAttentionError>,
    },
}
