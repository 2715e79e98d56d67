//! Steps 1 and 3-6 of the definition: query blocks, the per-block column permutation, groups,
//! the representative queries Q' and the fused keys K'.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::hashing::{inverse_gray, sign_codes};
use crate::hyperplanes::{hyperplanes, SplitMix64};
use crate::{AttentionProblem, Grouping, Representative};

/// Step 1: `[batch, heads, seq_q, head_dim]` into blocks
/// `[batch, heads, blocks, block_rows, head_dim]`, the last block padded with zero rows.
pub fn split_blocks<B: Backend>(query: Tensor<B, 4>, block_rows: usize) -> Tensor<B, 5> {
    let [batch, heads, seq_q, head_dim] = query.dims();
    let num_blocks = seq_q.div_ceil(block_rows);
    let padding = num_blocks * block_rows - seq_q;
    let padded = if padding == 0 {
        query
    } else {
        let zeros = Tensor::zeros(
            [batch, heads, padding, head_dim],
            (&query.device(), query.dtype()),
        );
        Tensor::cat(vec![query, zeros], 2)
    };
    padded.reshape([batch, heads, num_blocks, block_rows, head_dim])
}

/// Steps 2-3: for each block the permutation `pi` of its columns `[batch, heads, blocks,
/// head_dim]` (position in sorted order -> column index), sorted by sort key with ties broken
/// by the smaller column index. The key depends on `problem.config.grouping`.
pub fn block_permutations<B: Backend>(
    blocks: Tensor<B, 5>,
    problem: &AttentionProblem,
) -> Tensor<B, 4, Int> {
    let config = &problem.config;
    let [batch, heads, num_blocks, _, head_dim] = blocks.dims();
    let device = blocks.device();
    let keys = match config.grouping {
        Grouping::Lsh => {
            let planes = hyperplanes(config.seed, config.num_projections, config.block_rows);
            let codes = sign_codes(blocks, &planes, config.num_projections);
            inverse_gray(codes, config.num_projections)
        }
        Grouping::Random => {
            let mut rng = SplitMix64::new(config.seed);
            let count = batch * heads * num_blocks * head_dim;
            let keys: Vec<i64> = (0..count).map(|_| (rng.next_u64() >> 44) as i64).collect();
            Tensor::from_data(
                TensorData::new(keys, [batch, heads, num_blocks, head_dim]),
                &device,
            )
        }
        Grouping::IndexOrder => Tensor::zeros([batch, heads, num_blocks, head_dim], &device),
    };
    // key * head_dim + column is unique per block, so the sort is deterministic on every
    // backend whatever its sort algorithm.
    let columns = Tensor::<B, 1, Int>::arange(0..head_dim as i64, &device)
        .reshape([1, 1, 1, head_dim])
        .expand([batch, heads, num_blocks, head_dim]);
    keys.mul_scalar(head_dim as i64).add(columns).argsort(3)
}

/// Step 4 as matrices: `one_hot[.., t, c] = 1` where `pi[t] = c`, reshaped to
/// `[batch, heads, blocks, head_dim / group_size, group_size, head_dim]`: group `j`, member
/// `m` is column `pi[j * group_size + m]`.
pub(super) struct GroupMembership<B: Backend> {
    one_hot: Tensor<B, 6>,
}

pub(super) fn group_membership<B: Backend>(
    permutation: Tensor<B, 4, Int>,
    problem: &AttentionProblem,
) -> GroupMembership<B> {
    let [batch, heads, num_blocks, head_dim] = permutation.dims();
    let group_size = problem.config.group_size;
    let device = permutation.device();
    let shape = [batch, heads, num_blocks, head_dim, head_dim];
    let columns = Tensor::<B, 1, Int>::arange(0..head_dim as i64, &device)
        .reshape([1, 1, 1, 1, head_dim])
        .expand(shape);
    let one_hot = permutation
        .unsqueeze_dim::<5>(4)
        .expand(shape)
        .equal(columns)
        .float()
        .reshape([
            batch,
            heads,
            num_blocks,
            head_dim / group_size,
            group_size,
            head_dim,
        ]);
    GroupMembership { one_hot }
}

impl<B: Backend> GroupMembership<B> {
    /// `[batch, heads, blocks, head_dim, head_dim / group_size]`: column `c` to group `j`
    /// with weight `weight` for the members selected by `members` (0..group_size).
    fn selection(&self, members: std::ops::Range<usize>, weight: f64) -> Tensor<B, 5> {
        let count = members.len();
        self.one_hot
            .clone()
            .narrow(4, members.start, count)
            .sum_dim(4)
            .squeeze_dim::<5>(4)
            .mul_scalar(weight)
            .swap_dims(3, 4)
    }
}

/// Step 5: Q' `[batch, heads, blocks, block_rows, head_dim / group_size]`, column `j` the
/// group's first column (`Sample`) or the mean of its columns (`Mean`, `Projected`).
pub(super) fn representative_queries<B: Backend>(
    blocks: Tensor<B, 5>,
    membership: &GroupMembership<B>,
    problem: &AttentionProblem,
) -> Tensor<B, 5> {
    let group_size = problem.config.group_size;
    let selection = match problem.config.representative {
        Representative::Sample => membership.selection(0..1, 1.0),
        Representative::Mean | Representative::Projected => {
            membership.selection(0..group_size, 1.0 / group_size as f64)
        }
    };
    let dtype = blocks.dtype();
    blocks.matmul(selection.cast(dtype))
}

/// Step 6: K' `[batch, heads, blocks, seq_k, head_dim / group_size]`, column `j` the sum of
/// the group's key columns, with the block's own permutation. For `Projected` each key column
/// is weighted by its query column's least-squares coefficient on the representative.
pub(super) fn fuse_keys<B: Backend>(
    key: Tensor<B, 4>,
    blocks: Tensor<B, 5>,
    reduced_queries: Tensor<B, 5>,
    membership: &GroupMembership<B>,
    problem: &AttentionProblem,
) -> Tensor<B, 5> {
    let [batch, heads, seq_k, head_dim] = key.dims();
    let sums = membership
        .selection(0..problem.config.group_size, 1.0)
        .cast(key.dtype());
    let fusion = match problem.config.representative {
        Representative::Projected => {
            let weights = projection_weights(blocks, reduced_queries, sums.clone());
            sums * weights.swap_dims(3, 4)
        }
        Representative::Sample | Representative::Mean => sums,
    };
    key.unsqueeze_dim::<5>(2)
        .expand([batch, heads, problem.num_blocks(), seq_k, head_dim])
        .matmul(fusion)
}

/// `<q_c, r_c> / <r_c, r_c>` over the block's rows, `[batch, heads, blocks, 1, head_dim]`,
/// where `r_c` is the representative of column `c`'s group; 0 where the representative is zero.
fn projection_weights<B: Backend>(
    blocks: Tensor<B, 5>,
    reduced_queries: Tensor<B, 5>,
    sums: Tensor<B, 5>,
) -> Tensor<B, 5> {
    // Each column's own representative, `[batch, heads, blocks, block_rows, head_dim]`.
    let representatives = reduced_queries.matmul(sums.swap_dims(3, 4));
    let along = (blocks * representatives.clone()).sum_dim(3);
    let length = representatives.powi_scalar(2).sum_dim(3);
    along / length.clamp_min(f32::MIN_POSITIVE as f64)
}
