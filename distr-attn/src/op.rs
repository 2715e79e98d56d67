//! The public op.

use burn::tensor::{Bool, Tensor};

use crate::{AttentionProblem, DistrAttentionBackend, DistrAttentionConfig, DistrAttentionError};

/// DistrAttention: `softmax(s * Q' K'^T + mask) V`, with Q' and K' the grouped queries and
/// fused keys of each query block (exact attention when `config.group_size == 1`).
///
/// # Shapes
///
/// - query: `[batch, heads, seq_q, head_dim]`
/// - key: `[batch, kv_heads, seq_k, head_dim]`, `heads` a multiple of `kv_heads`; query head
///   `h` reads key/value head `h / (heads / kv_heads)`
/// - value: `[batch, kv_heads, seq_k, value_dim]`
/// - mask: broadcastable to `[batch, heads, seq_q, seq_k]`, `true` = masked
/// - output: `[batch, heads, seq_q, value_dim]`, in the query's dtype
///
/// f16 and bf16 inputs are computed with f32 accumulation. Rows whose keys are all masked are
/// zero. Every shape and parameter is checked before any work: bad input is an error, never a
/// panic.
pub fn distr_attention<B: DistrAttentionBackend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
    config: &DistrAttentionConfig,
) -> Result<Tensor<B, 4>, DistrAttentionError> {
    let problem = AttentionProblem::check(&query, &key, &value, mask.as_ref(), config)?;
    Ok(B::distr_attention_checked(
        query, key, value, mask, &problem,
    ))
}
