//! DistrAttention in plain Burn tensor ops: the definition of `../shared/DISTR_ATTENTION.md`,
//! step by step and with the same names. It runs on every backend, is differentiable through
//! `Autodiff`, and is the oracle the fused kernels are tested against.
//!
//! Memory: it materialises the `[batch, heads, seq_q, seq_k]` scores, and the permuted keys
//! of every query block (`[batch, heads, blocks, seq_k, head_dim]`) that it sums into the
//! fused keys.

mod expanded;
pub mod gram;
mod grouping;
mod hashing;
mod softmax;

pub use expanded::expanded_query;
pub use grouping::{block_permutations, split_blocks};
pub use hashing::{inverse_gray, sign_codes};

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, FloatDType, Tensor};

use crate::AttentionProblem;
use grouping::{fuse_keys, group_columns, representative_queries};

/// The op's output `[batch, heads, seq_q, value_dim]`, in the query's dtype.
pub fn distr_attention_reference<B: Backend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
    problem: &AttentionProblem,
) -> Tensor<B, 4> {
    let dtype = query.dtype();
    let user_masked = mask.is_some();
    let mask = softmax::combined_mask(mask, problem, &query.device());
    let value = to_accumulation(value);
    let probabilities = masked_probabilities(query, key, mask.clone(), problem);
    let output = match mask.filter(|_| user_masked) {
        Some(mask) => {
            probabilities.matmul(zero_unread_values(repeat_kv_heads(value, problem), &mask))
        }
        // The causal mask alone leaves no key unread: the last query row reads them all.
        None => grouped_heads_matmul(probabilities, value),
    };
    from_accumulation(output, dtype)
}

/// The attention weights `softmax(S)` `[batch, heads, seq_q, seq_k]`, in f32 (f64 for f64
/// inputs). Fully masked rows are zero.
pub fn attention_probabilities<B: Backend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
    problem: &AttentionProblem,
) -> Tensor<B, 4> {
    let mask = softmax::combined_mask(mask, problem, &query.device());
    masked_probabilities(query, key, mask, problem)
}

/// [`attention_probabilities`] with the user's and the causal mask already combined.
fn masked_probabilities<B: Backend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
    problem: &AttentionProblem,
) -> Tensor<B, 4> {
    let scores = scores(to_accumulation(query), to_accumulation(key), problem).mul_scalar(problem.scale);
    softmax::masked_softmax(scores, mask, problem.quiet_softmax)
}

/// Values `[batch, heads, seq_k, value_dim]` with the rows of keys that every query row of a
/// head masks (padding) set to zero. Masked keys get weight exactly zero, but `P V` is a
/// product: without this, a NaN or Inf stored at a padded position would reach every row as
/// `0 * NaN`.
fn zero_unread_values<B: Backend>(value: Tensor<B, 4>, mask: &Tensor<B, 4, Bool>) -> Tensor<B, 4> {
    let shape = value.dims();
    let unread = mask.clone().all_dim(2).swap_dims(2, 3).expand(shape);
    value.mask_fill(unread, 0.0)
}

/// Step 7's `Q' K'^T` before scaling, `[batch, heads, seq_q, seq_k]`.
fn scores<B: Backend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    problem: &AttentionProblem,
) -> Tensor<B, 4> {
    if problem.config.is_exact() {
        return grouped_heads_matmul(query, key.transpose());
    }
    // Each query head groups its own columns: every head gets its own copy of its keys.
    let key = repeat_kv_heads(key, problem);
    let [batch, heads, num_blocks] = [problem.batch, problem.heads, problem.num_blocks()];
    let block_rows = problem.config.block_rows;

    // Step 1: query blocks of `block_rows` rows, the last one zero-padded.
    let blocks = split_blocks(query, block_rows);
    // Steps 2-3: one column permutation per block (from detached queries, and keys for the
    // `Gram` groupings: a constant).
    let permutation = block_permutations(blocks.clone().detach(), key.clone().detach(), problem);
    // Step 4: groups of `group_size` consecutive columns in permutation order, each column a
    // vector of its block's rows.
    let query_groups = group_columns(
        blocks.swap_dims(3, 4),
        permutation.clone(),
        problem.config.group_size,
    );
    // Step 5: Q' `[batch, heads, blocks, block_rows, head_dim / group_size]`.
    let reduced_queries = representative_queries(query_groups.clone(), problem);
    // Step 6: K'^T `[batch, heads, blocks, head_dim / group_size, seq_k]`.
    let fused_keys = fuse_keys(
        key,
        permutation,
        query_groups,
        reduced_queries.clone(),
        problem,
    );

    reduced_queries
        .matmul(fused_keys)
        .reshape([batch, heads, num_blocks * block_rows, problem.seq_k])
        .narrow(2, 0, problem.seq_q)
}

/// `lhs [batch, heads, rows, inner] x rhs [batch, kv_heads, inner, cols]`, query head `h`
/// reading key/value head `h / (heads / kv_heads)` (grouped-query attention). The query heads
/// that share a key/value head are stacked along the rows, so `rhs` is read where it lies
/// instead of being copied once per query head.
fn grouped_heads_matmul<B: Backend>(lhs: Tensor<B, 4>, rhs: Tensor<B, 4>) -> Tensor<B, 4> {
    let [batch, heads, rows, inner] = lhs.dims();
    let [_, kv_heads, _, cols] = rhs.dims();
    if heads == kv_heads {
        return lhs.matmul(rhs);
    }
    lhs.reshape([batch, kv_heads, heads / kv_heads * rows, inner])
        .matmul(rhs)
        .reshape([batch, heads, rows, cols])
}

/// Grouped-query attention's key/value heads repeated for every query head that reads them.
pub(crate) fn repeat_kv_heads<B: Backend>(tensor: Tensor<B, 4>, problem: &AttentionProblem) -> Tensor<B, 4> {
    let repeats = problem.heads / problem.kv_heads;
    if repeats == 1 {
        return tensor;
    }
    let [batch, kv_heads, seq, dim] = tensor.dims();
    tensor
        .unsqueeze_dim::<5>(2)
        .expand([batch, kv_heads, repeats, seq, dim])
        .reshape([batch, kv_heads * repeats, seq, dim])
}

/// Half-precision inputs are computed in f32; f32 and f64 stay as they are.
pub(crate) fn to_accumulation<B: Backend>(tensor: Tensor<B, 4>) -> Tensor<B, 4> {
    match tensor.dtype() {
        DType::F16 | DType::BF16 => tensor.cast(FloatDType::F32),
        _ => tensor,
    }
}

/// Back to the inputs' `dtype` from [`to_accumulation`]'s.
pub(crate) fn from_accumulation<B: Backend>(tensor: Tensor<B, 4>, dtype: DType) -> Tensor<B, 4> {
    match dtype {
        DType::F16 => tensor.cast(FloatDType::F16),
        DType::BF16 => tensor.cast(FloatDType::BF16),
        _ => tensor,
    }
}
