//! Errors of loading and running a Llama. Every variant names the offending value.

use std::path::PathBuf;

use distr_attn::experiment::ExperimentError;
use distr_attn::DistrAttentionError;

/// Why a model, tokenizer or run was refused.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not a GGUF file (magic {magic:?}, expected \"GGUF\")")]
    NotGguf { path: PathBuf, magic: [u8; 4] },
    #[error("unsupported GGUF version {0}: expected 2 or 3")]
    GgufVersion(u32),
    #[error("GGUF file `{path}` is truncated (or corrupt): {what} needs bytes {start}..{end}, the file has {len}")]
    Truncated {
        path: PathBuf,
        what: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("malformed GGUF: {0}")]
    Malformed(String),
    #[error("unsupported tensor type {kind} for tensor `{tensor}`: supported are F32, F16, BF16, Q8_0, Q4_0, Q4_1")]
    UnsupportedTensorType { tensor: String, kind: String },
    #[error("tensor `{0}` is missing from the checkpoint")]
    MissingTensor(String),
    #[error("tensor `{tensor}` has shape {actual:?}, expected {expected:?}")]
    BadShape {
        tensor: String,
        actual: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("metadata key `{key}` is missing or has the wrong type (expected {expected})")]
    Metadata { key: String, expected: &'static str },
    #[error("unsupported architecture `{0}`: expected `llama`")]
    Architecture(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("bad `{path}`: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("bad safetensors file `{path}`: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("no `*.safetensors` file in `{0}`")]
    NoSafetensors(PathBuf),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    TokenId { id: u32, vocab_size: usize },
    #[error("{tokens} tokens exceed the model's context of {max} positions")]
    Context { tokens: usize, max: usize },
    #[error("empty input: {0}")]
    Empty(&'static str),
    #[error("{what} has {tokens} tokens, at least {needed} are needed")]
    TooFewTokens { what: String, tokens: usize, needed: usize },
    #[error(transparent)]
    Attention(#[from] DistrAttentionError),
    /// Options, checkpoints and output files (the layer shared with the other models).
    #[error(transparent)]
    Experiment(#[from] ExperimentError),
}

impl LlamaError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| LlamaError::Io { path, source }
    }
}

pub type Result<T> = std::result::Result<T, LlamaError>;
