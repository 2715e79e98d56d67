//! DistrAttention for Burn: a fast approximate self-attention with full context.
//!
//! The score product `Q K^T` sums over the head dimension's columns; DistrAttention groups
//! similar query columns (by locality-sensitive hashing, per block of query rows), keeps one
//! representative per group and sums the matching key columns, so the score product's inner
//! dimension shrinks from `head_dim` to `head_dim / group_size`. Every token still attends to
//! every token, and `P V` stays exact.
//!
//! - [`distr_attention`]: the op, on every backend ([`DistrAttentionBackend`]).
//! - [`distr_attention_per_head`]: the op with one configuration per query head.
//! - [`DistrMultiHeadAttention`]: a drop-in for Burn's `MultiHeadAttention`.
//! - [`ModelAttentionConfig`]: which attention each layer of a model uses.
//! - [`reference`]: the op in plain tensor ops, step by step.
//! - [`vector_exp`]: the vectorisable exponential of the CPU kernels, for the models' own.
//! - [`experiment`] (feature `experiment`): the layer above the op that model command lines
//!   share: attention options, calibration, checkpoints, progress.

mod backend;
pub mod backends;
mod config;
mod error;
mod heads;
#[cfg(feature = "experiment")]
pub mod experiment;
mod flex;
mod hyperplanes;
pub mod kernel;
mod layers;
mod mha;
mod op;
pub mod reference;
mod validate;
pub mod vector_exp;

pub use backend::{DistrAttentionBackend, DECODE_QUERY_ROWS};
pub use config::{
    AttentionKind, DistrAttentionConfig, Grouping, Representative, MAX_BLOCK_ROWS, MAX_GROUP_SIZE,
    MAX_HEAD_DIM, MAX_NUM_PROJECTIONS,
};
pub use error::DistrAttentionError;
pub use hyperplanes::hyperplanes;
pub use layers::{is_decode_step, ModelAttentionConfig};
pub use mha::{
    DistrMhaInput, DistrMhaOutput, DistrMultiHeadAttention, DistrMultiHeadAttentionConfig,
};
pub use heads::distr_attention_per_head;
pub use op::distr_attention;
pub use validate::AttentionProblem;

#[cfg(test)]
pub(crate) mod tests {
    pub type TestBackend = burn::backend::NdArray<f32>;
}
