//! Steps 1 and 3-6 of the definition: query blocks, the per-block column permutation, groups,
//! the representative queries Q' and the fused keys K'.

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use super::gram::gram_permutations;
use super::hashing::{inverse_gray, sign_codes};
use crate::config::NORM_BANDS;
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
/// by the smaller column index. The key depends on `problem.config.grouping`; for
/// [`Grouping::LshStrided`] the sorted order is then laid out with a stride ([`strided`]),
/// so that the consecutive groups of step 4 take every `head_dim / G`-th sorted column. The
/// `Gram` groupings choose groups from the blocks and `key` `[batch, kv_heads, seq_k, head_dim]`
/// (grouped-query heads as the op takes them, or repeated to the query heads) instead of
/// sorting.
pub fn block_permutations<B: Backend>(
    blocks: Tensor<B, 5>,
    key: Tensor<B, 4>,
    problem: &AttentionProblem,
) -> Tensor<B, 4, Int> {
    let config = &problem.config;
    let [batch, heads, num_blocks, _, head_dim] = blocks.dims();
    let device = blocks.device();
    let keys = match config.grouping {
        Grouping::Gram | Grouping::GramKeyWeighted | Grouping::GramKeyDistance => {
            return gram_permutations(blocks, key, config.grouping, config.representative, config.group_size);
        }
        Grouping::Lsh | Grouping::LshStrided => {
            let planes = hyperplanes(config.seed, config.num_projections, config.block_rows);
            let codes = sign_codes(blocks, &planes, config.num_projections);
            inverse_gray(codes, config.num_projections)
        }
        Grouping::LshNorms => {
            let planes = hyperplanes(config.seed, config.num_projections, config.block_rows);
            let codes = inverse_gray(sign_codes(blocks.clone(), &planes, config.num_projections), config.num_projections);
            let bands = norm_bands(blocks);
            let codes = codes.cast(bands.dtype());
            bands.bitwise_left_shift_scalar((config.num_projections as i64).elem()).add(codes)
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
    let sorted = sort_columns(keys);
    match config.grouping {
        Grouping::LshStrided => strided(sorted, config.group_size),
        _ => sorted,
    }
}

/// Each column's band of length in its block, `[batch, heads, blocks, head_dim]`: its rank by
/// squared norm (ties by index) times [`NORM_BANDS`] over `head_dim`.
fn norm_bands<B: Backend>(blocks: Tensor<B, 5>) -> Tensor<B, 4, Int> {
    let head_dim = blocks.dims()[4];
    let norms = blocks.powi_scalar(2).sum_dim(3).squeeze_dim::<4>(3);
    let ranks = norms.argsort(3).argsort(3);
    ranks.mul_scalar(NORM_BANDS as i64).div_scalar(head_dim as i64)
}

/// The permutation whose consecutive groups of `group_size` are `sorted`'s strided groups:
/// position `j * G + m` takes sorted position `j + m * head_dim / G`.
fn strided<B: Backend>(sorted: Tensor<B, 4, Int>, group_size: usize) -> Tensor<B, 4, Int> {
    let [batch, heads, num_blocks, head_dim] = sorted.dims();
    sorted
        .reshape([batch, heads, num_blocks, group_size, head_dim / group_size])
        .swap_dims(3, 4)
        .reshape([batch, heads, num_blocks, head_dim])
}

/// Step 3: the permutation that sorts each block's columns by their keys `[batch, heads,
/// blocks, head_dim]`, ties broken by the smaller column index.
fn sort_columns<B: Backend>(keys: Tensor<B, 4, Int>) -> Tensor<B, 4, Int> {
    let [batch, heads, num_blocks, head_dim] = keys.dims();
    // key * head_dim + column is unique per block, so the sort is deterministic on every
    // backend whatever its sort algorithm.
    // In the keys' int type: backends differ in what `from_data` and `argsort` give (Flex:
    // i64) and what `arange` gives (the device default), and int ops want one type.
    let columns = Tensor::<B, 1, Int>::arange(0..head_dim as i64, &keys.device())
        .cast(keys.dtype())
        .reshape([1, 1, 1, head_dim])
        .expand([batch, heads, num_blocks, head_dim]);
    keys.mul_scalar(head_dim as i64).add(columns).argsort(3)
}

/// Step 4: the columns of each group, `[batch, heads, blocks, head_dim / group_size,
/// group_size, rows]`: member `m` of group `j` in block `n` is column `pi_n[j * group_size + m]`
/// of `columns` `[batch, heads, sources, head_dim, rows]` (columns as vectors of their rows),
/// taken from source `n` (the query blocks: `sources` = blocks) or from source 0 for every
/// block (the keys: `sources` = 1).
///
/// A selection rather than a product with a 0/1 matrix: every entry is read only by its own
/// group, so a NaN or Inf cannot spread to the other groups as `0 * NaN`.
pub(super) fn group_columns<B: Backend>(
    columns: Tensor<B, 5>,
    permutation: Tensor<B, 4, Int>,
    group_size: usize,
) -> Tensor<B, 6> {
    let [batch, heads, sources, head_dim, rows] = columns.dims();
    let num_blocks = permutation.dims()[2];
    let device = permutation.device();
    // Row of `columns` flattened to `[batch * heads * sources * head_dim, rows]` where the
    // columns of (batch and head `bh`, block `n`) start.
    let source = if sources == 1 {
        Tensor::<B, 1, Int>::zeros([num_blocks], &device)
    } else {
        Tensor::arange(0..num_blocks as i64, &device)
    };
    let first_row = Tensor::<B, 1, Int>::arange(0..(batch * heads) as i64, &device)
        .mul_scalar(sources as i64)
        .reshape([batch, heads, 1, 1])
        .add(source.reshape([1, 1, num_blocks, 1]))
        .mul_scalar(head_dim as i64)
        .cast(permutation.dtype());
    let rows_selected = permutation
        .add(first_row)
        .reshape([batch * heads * num_blocks * head_dim]);
    columns
        .reshape([batch * heads * sources * head_dim, rows])
        .select(0, rows_selected)
        .reshape([
            batch,
            heads,
            num_blocks,
            head_dim / group_size,
            group_size,
            rows,
        ])
}

/// Step 5: Q' `[batch, heads, blocks, block_rows, head_dim / group_size]` from the grouped
/// query columns: column `j` is the group's first column (`Sample`), the mean of its
/// columns (`Mean`, `Projected`) or their sum (`SampledKeys`).
pub(super) fn representative_queries<B: Backend>(
    query_groups: Tensor<B, 6>,
    problem: &AttentionProblem,
) -> Tensor<B, 5> {
    let representatives = match problem.config.representative {
        Representative::Sample => query_groups.narrow(4, 0, 1),
        Representative::Mean | Representative::Projected => query_groups.mean_dim(4),
        Representative::SampledKeys => query_groups.sum_dim(4),
    };
    representatives.squeeze_dim::<5>(4).swap_dims(3, 4)
}

/// Step 6: K'^T `[batch, heads, blocks, head_dim / group_size, seq_k]`, row `j` the sum of the
/// group's key columns, with the block's own permutation. For `Projected` each key column is
/// weighted by its query column's least-squares coefficient on the representative; for
/// `SampledKeys` row `j` is the key column of the group's first member alone.
pub(super) fn fuse_keys<B: Backend>(
    key: Tensor<B, 4>,
    permutation: Tensor<B, 4, Int>,
    query_groups: Tensor<B, 6>,
    reduced_queries: Tensor<B, 5>,
    problem: &AttentionProblem,
) -> Tensor<B, 5> {
    let key_columns = key.swap_dims(2, 3).unsqueeze_dim::<5>(2);
    let key_groups = group_columns(key_columns, permutation, problem.config.group_size);
    let key_groups = match problem.config.representative {
        Representative::Projected => key_groups * projection_weights(query_groups, reduced_queries),
        Representative::SampledKeys => key_groups.narrow(4, 0, 1),
        Representative::Sample | Representative::Mean => key_groups,
    };
    key_groups.sum_dim(4).squeeze_dim::<5>(4)
}

/// `<q_c, r> / <r, r>` over the block's rows for each column `c` of a group with
/// representative `r`, `[batch, heads, blocks, head_dim / group_size, group_size, 1]`; 0 where
/// the representative is zero.
///
/// Rows where `q_c * r` or `r * r` is not finite are left out of both sums: the weights are
/// shared by the whole block, and a NaN or Inf in one query row must not reach the keys that
/// the block's other rows use.
pub(super) fn projection_weights<B: Backend>(
    query_groups: Tensor<B, 6>,
    reduced_queries: Tensor<B, 5>,
) -> Tensor<B, 6> {
    let representatives = reduced_queries
        .swap_dims(3, 4)
        .unsqueeze_dim::<6>(4)
        .expand(query_groups.dims());
    let along = query_groups * representatives.clone();
    let length = representatives.powi_scalar(2);
    let left_out = along
        .clone()
        .is_finite()
        .bool_and(length.clone().is_finite())
        .bool_not();
    let along = along.mask_fill(left_out.clone(), 0.0).sum_dim(5);
    let length = length.mask_fill(left_out, 0.0).sum_dim(5);
    along / length.clamp_min(f32::MIN_POSITIVE as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestBackend;
    use crate::DistrAttentionConfig;

    fn to_i64(tensor: Tensor<TestBackend, 4, Int>) -> Vec<i64> {
        tensor.into_data().convert::<i64>().to_vec::<i64>().unwrap()
    }

    /// Inverse Gray code, bit by bit: bit `p` of the result is the parity of bits `p..` of `g`.
    fn inverse_gray_of(gray: i64) -> i64 {
        let mut binary = 0;
        let mut parity = 0;
        for bit in (0..63).rev() {
            parity ^= (gray >> bit) & 1;
            binary |= parity << bit;
        }
        binary
    }

    /// Sorts `0..keys.len()` by key, ties by the smaller index.
    fn sorted_by(keys: &[i64]) -> Vec<i64> {
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&column| (keys[column], column));
        order.into_iter().map(|column| column as i64).collect()
    }

    #[test]
    fn ties_are_broken_by_the_smaller_column_index() {
        let keys =
            Tensor::<TestBackend, 1, Int>::from_ints([5, 1, 5, 0, 1, 5, 0, 2], &Default::default())
                .reshape([1, 1, 1, 8]);
        assert_eq!(to_i64(sort_columns(keys)), vec![3, 6, 1, 4, 7, 0, 2, 5]);
    }

    /// G = 2 of 8 sorted columns: groups {s0, s4}, {s1, s5}, ...; G = 4: {s0, s2, s4, s6}, ...
    #[test]
    fn strided_groups_take_every_groups_th_sorted_column() {
        let sorted = Tensor::<TestBackend, 1, Int>::from_ints([7, 3, 5, 0, 6, 1, 4, 2], &Default::default())
            .reshape([1, 1, 1, 8]);
        assert_eq!(to_i64(strided(sorted.clone(), 2)), vec![7, 6, 3, 1, 5, 4, 0, 2]);
        assert_eq!(to_i64(strided(sorted.clone(), 4)), vec![7, 5, 6, 4, 3, 0, 1, 2]);
        assert_eq!(to_i64(strided(sorted.clone(), 1)), to_i64(sorted));
    }

    /// `LshNorms` sorts by length band first: with eight columns in four bands, each group of
    /// two holds the two columns of one band (the shortest two first), whatever their
    /// directions.
    #[test]
    fn lsh_norms_groups_columns_of_one_length_band() {
        let device = Default::default();
        let lengths = [5.0, 1.0, 7.0, 2.0, 8.0, 3.0, 6.0, 4.0];
        let direction = Tensor::<TestBackend, 4>::random([1, 1, 16, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let norms = direction.clone().powi_scalar(2).sum_dim(2).sqrt();
        let scale = Tensor::<TestBackend, 1>::from_floats(lengths, &device).reshape([1, 1, 1, 8]);
        let query = direction.div(norms).mul(scale);
        let config = DistrAttentionConfig::new().with_block_rows(16).with_group_size(2).with_grouping(Grouping::LshNorms);
        let problem = AttentionProblem::check(&query, &query, &query, None, &config).unwrap();
        let permutation = to_i64(block_permutations(split_blocks(query.clone(), 16), query, &problem));
        let mut groups: Vec<Vec<i64>> = permutation.chunks(2).map(|pair| {
            let mut pair = pair.to_vec();
            pair.sort_unstable();
            pair
        }).collect();
        groups.sort_by_key(|pair| lengths[pair[0] as usize] as i64);
        assert_eq!(groups, [vec![1, 3], vec![5, 7], vec![0, 6], vec![2, 4]]);
    }

    /// `LshStrided` is `Lsh`'s sorted order laid out with the stride, block by block.
    #[test]
    fn lsh_strided_is_the_lsh_order_with_a_stride() {
        let device = Default::default();
        let query = Tensor::<TestBackend, 4>::random([1, 2, 40, 16], burn::tensor::Distribution::Default, &device);
        let permutation = |grouping| {
            let config = DistrAttentionConfig::new().with_block_rows(16).with_group_size(4).with_grouping(grouping);
            let problem = AttentionProblem::check(&query, &query, &query, None, &config).unwrap();
            block_permutations(split_blocks(query.clone(), 16), query.clone(), &problem)
        };
        let lsh = permutation(Grouping::Lsh);
        assert_eq!(to_i64(permutation(Grouping::LshStrided)), to_i64(strided(lsh.clone(), 4)));
        assert_ne!(to_i64(strided(lsh.clone(), 4)), to_i64(lsh));
    }

    /// Steps 1-3 on a hand-made query of 6 rows in blocks of 4 (the second block padded with
    /// two zero rows), against codes, inverse Gray keys and a stable sort computed here in
    /// plain Rust from the same hyperplanes.
    #[test]
    fn permutation_sorts_columns_by_inverse_gray_key_then_index() {
        let (block_rows, num_projections, head_dim) = (4, 3, 8);
        // Columns: 1 and 2 repeat column 0 (scaled by 1 and 2: same codes, so ties), 3 is its
        // negation; 5 is zero in the second block and 7 in the first (code 0 there).
        #[rustfmt::skip]
        let rows: [[f32; 8]; 6] = [
            [ 1.0,  1.0,  2.0, -1.0,  0.3, -1.0,  2.0, 0.0],
            [-2.0, -2.0, -4.0,  2.0,  1.0,  0.2,  1.0, 0.0],
            [ 0.5,  0.5,  1.0, -0.5, -1.0,  2.0,  1.0, 0.0],
            [ 3.0,  3.0,  6.0, -3.0,  2.0, -0.7, -1.0, 0.0],
            [ 1.0,  1.0,  2.0, -1.0, -1.0,  0.0,  3.0, 0.4],
            [ 2.0,  2.0,  4.0, -2.0,  0.5,  0.0, -2.0, 1.0],
        ];
        let config = DistrAttentionConfig::new()
            .with_block_rows(block_rows)
            .with_num_projections(num_projections)
            .with_seed(1);
        let device = Default::default();
        let query = Tensor::<TestBackend, 2>::from_data(rows, &device).reshape([1, 1, 6, head_dim]);
        let problem = AttentionProblem::check(&query, &query, &query, None, &config).unwrap();
        let actual = to_i64(block_permutations(
            split_blocks(query.clone(), block_rows),
            query,
            &problem,
        ));

        let planes = hyperplanes(config.seed, num_projections, block_rows);
        let mut discriminating = false;
        for block in 0..2 {
            let codes: Vec<i64> = (0..head_dim)
                .map(|column| {
                    (0..num_projections)
                        .filter(|&plane| {
                            let dot: f64 = (0..block_rows)
                                .filter_map(|row| {
                                    rows.get(block * block_rows + row).map(|r| (row, r))
                                })
                                .map(|(row, r)| {
                                    r[column] as f64 * planes[plane * block_rows + row] as f64
                                })
                                .sum();
                            dot > 0.0
                        })
                        .map(|plane| 1i64 << plane)
                        .sum()
                })
                .collect();
            let keys: Vec<i64> = codes.iter().map(|&code| inverse_gray_of(code)).collect();
            let expected = sorted_by(&keys);
            assert_eq!(
                &actual[block * head_dim..][..head_dim],
                &expected[..],
                "block {block}: codes {codes:?}, keys {keys:?}"
            );
            // Columns 0, 1, 2 tie: they must follow each other in index order.
            let position = |column: i64| expected.iter().position(|&c| c == column).unwrap();
            assert_eq!(
                [position(1), position(2)],
                [position(0) + 1, position(0) + 2]
            );
            // The case must tell the inverse Gray key from the raw code.
            discriminating |= sorted_by(&codes) != expected;
        }
        assert!(
            discriminating,
            "sorting by raw codes gives the same permutations"
        );
    }
}
