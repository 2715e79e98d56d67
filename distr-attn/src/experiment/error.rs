//! Errors of the experiment layer: each names the flag, file or value it is about.

use std::path::PathBuf;

use crate::backends::BackendUnavailable;
use crate::DistrAttentionError;

/// Why an option, a file or a run was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// A command-line value is out of range or does not fit the other options.
    #[error("invalid {flag} {value}: {expected}")]
    Argument {
        flag: String,
        value: String,
        expected: String,
    },
    /// The attention configuration does not fit the model, or a file holding one is bad.
    #[error(transparent)]
    Attention(#[from] DistrAttentionError),
    /// A checkpoint could not be written, read, or does not fit the model.
    #[error("checkpoint `{path}`: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// A file could not be read or written.
    #[error("`{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file's contents are not what its format requires.
    #[error("`{path}`: {message}")]
    Format { path: PathBuf, message: String },
    /// The chosen backend is not compiled in.
    #[error(transparent)]
    Backend(#[from] BackendUnavailable),
}

impl ExperimentError {
    /// An error naming `flag` and its `value`.
    pub fn argument(flag: impl Into<String>, value: impl std::fmt::Display, expected: impl Into<String>) -> Self {
        Self::Argument { flag: flag.into(), value: value.to_string(), expected: expected.into() }
    }
}

/// An error naming `flag` and its `value` unless `ok`: the range check of every numeric flag.
pub fn require(
    ok: bool,
    flag: &str,
    value: impl std::fmt::Display,
    expected: impl Into<String>,
) -> Result<(), ExperimentError> {
    if ok {
        Ok(())
    } else {
        Err(ExperimentError::argument(flag, value, expected))
    }
}
