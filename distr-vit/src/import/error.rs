//! Errors of weight import.

use std::path::PathBuf;

/// Why weights could not be loaded. Every variant names the file or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a valid model of its format.
    #[error("cannot parse {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// The model needs a tensor the checkpoint does not have; `source_name` says under which
    /// name (or names, quoted) the checkpoint would have it.
    #[error("missing tensor `{tensor}` (expected in the checkpoint as {source_name})")]
    Missing { tensor: String, source_name: String },
    /// A tensor has the wrong shape for the model.
    #[error("tensor `{tensor}` (checkpoint name `{source_name}`) has shape {actual:?}, the model expects {expected:?}")]
    Shape {
        tensor: String,
        source_name: String,
        actual: Vec<usize>,
        expected: Vec<usize>,
    },
    /// A tensor is not floating point.
    #[error("tensor `{tensor}` has dtype {dtype}: expected a floating-point type")]
    DType { tensor: String, dtype: String },
    /// Neither Hugging Face nor timm names were found.
    #[error("{path}: unknown tensor naming (expected Hugging Face `embeddings.cls_token` or timm `cls_token` + `pos_embed`)")]
    UnknownNaming { path: PathBuf },
    /// The model could not be built from its config.
    #[error("building the model: {0}")]
    Model(#[from] crate::VitError),
    /// Burn refused a tensor although it passed the checks.
    #[error("applying weights failed: {0}")]
    Apply(String),
}
