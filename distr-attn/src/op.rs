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
/// panic. For quiet softmax (an implicit extra zero logit, as `DistrMultiHeadAttention` with
/// `quiet_softmax = true` uses), validate with [`AttentionProblem::check`], turn it on with
/// [`AttentionProblem::with_quiet_softmax`] and call
/// [`DistrAttentionBackend::distr_attention_checked`].
///
/// # Non-finite input
///
/// NaN and Inf never make the op fail; they reach only the rows that read them. Per batch
/// element and head, a NaN or Inf in
///
/// - **query** row `i`, column `c`: output row `i` is NaN (zeros if every one of its scores
///   is -Inf, as for a fully masked row); every other row stays finite. Exception: with
///   [`Representative::Sample`](crate::Representative::Sample) row `i` reads only its groups'
///   representatives, so if `c` is not the representative of its group in row `i`'s block,
///   the entry is dropped and row `i` stays finite too. The entry also sets column `c`'s sign
///   code in that block (Inf: each bit is the sign of the hyperplane's entry; NaN: bits 0, so
///   the column sorts first and is the first group's representative unless a column with a
///   smaller index also has key 0): the block's other rows stay finite but may be grouped
///   differently than without it.
/// - **key** row `j`: every row that attends to key `j` gets a non-finite score for it. A NaN
///   or +Inf score makes that row NaN; a -Inf score gives key `j` zero weight and the row
///   stays finite. Rows that mask key `j` are unaffected.
/// - **value** row `j`, column `d`: column `d` of every row that attends to key `j` is NaN or
///   Inf. A masked key has weight exactly zero, but `P V` is a product and `0 * NaN` is NaN, so
///   column `d` of rows that mask key `j` is NaN too, unless every query row masks key `j`
///   (padding): those values are never read. The fused kernel's portable path also never
///   reads causally hidden keys; its tensor-core path multiplies them by zero.
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
