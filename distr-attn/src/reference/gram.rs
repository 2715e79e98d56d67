//! Groupings chosen from Gram matrices ([`Grouping::Gram`], [`Grouping::GramKeyWeighted`],
//! [`Grouping::GramKeyDistance`]):
//! per query block, the groups that (greedily, then improved by swaps) minimise a bound on the
//! error the representative adds, rather than the angular neighbourhood LSH approximates.
//!
//! Grouping columns `a` and `b` changes every score by `sum over the group's columns c of
//! (q_c - q_rep) k_c` (`Sample`, `Mean`), or `q_b (k_a - k_b)` for `SampledKeys`. Its size is
//! bounded by a distance between the columns times a length of the others, all read off the
//! block's query Gram matrix `Q_n^T Q_n` (`head_dim x head_dim`, about the cost of hashing)
//! and the key Gram matrix `K^T K` of the head ([`pair_costs`]). Permutations are constants,
//! as LSH's are, found here on the host; for `Sample` and `Mean` the kernels' pre-pass finds
//! the same ones on the device.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rayon::prelude::*;
// Improving swaps after the greedy start: the kernels' bound, one source for both.
use kernels_cubecl::gram_grouping::{MAX_DISTANCE, MAX_SWAPS};

use crate::{Grouping, Representative};

/// Per block, the permutation `[batch, heads, blocks, head_dim]` whose consecutive groups of
/// `group_size` are the chosen groups (each group's columns in index order, groups by their
/// first column). `blocks` `[batch, heads, blocks, block_rows, head_dim]`, `key` `[batch,
/// kv_heads, seq_k, head_dim]` (query head `h` reads key head `h / (heads / kv_heads)`; keys
/// repeated to the query heads are read the same way).
pub fn gram_permutations<B: Backend>(
    blocks: Tensor<B, 5>,
    key: Tensor<B, 4>,
    grouping: Grouping,
    representative: Representative,
    group_size: usize,
) -> Tensor<B, 4, Int> {
    let [batch, heads, num_blocks, _, head_dim] = blocks.dims();
    let heads_per_kv = heads / key.dims()[1];
    let device = blocks.device();
    let query_gram = host(blocks.clone().swap_dims(3, 4).matmul(blocks));
    let key_gram = host(key.clone().swap_dims(2, 3).matmul(key));
    let square = head_dim * head_dim;
    // Blocks are independent: on the host's threads, in order. With blocks of a few rows there
    // are many of them (SmolLM2 at l = 8: 34,560 per 1024-token window), and this search took
    // half of a CPU evaluation's time on one thread.
    let permutations: Vec<i64> = (0..batch * heads * num_blocks)
        .into_par_iter()
        .flat_map_iter(|index| {
            // `batch * kv_heads + head / heads_per_kv`
            let batch_kv_head = index / num_blocks / heads_per_kv;
            let keys = &key_gram[batch_kv_head * square..][..square];
            let queries = &query_gram[index * square..][..square];
            let costs = pair_costs(queries, keys, head_dim, grouping, representative);
            grouped_columns(&costs, head_dim, group_size).into_iter().flatten().map(|column| column as i64)
        })
        .collect();
    Tensor::from_data(TensorData::new(permutations, [batch, heads, num_blocks, head_dim]), &device)
}

fn host<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f64> {
    tensor.into_data().convert::<f64>().to_vec::<f64>().expect("converted to f64")
}

/// `head_dim x head_dim` costs of grouping two columns, from the query Gram matrix `q` of the
/// block and the key Gram matrix `k` of the head (row-major):
///
/// - `Sample`, `Mean`: the query columns' squared distance `|q_a - q_b|^2`;
/// - `Projected`: the squared sine of their angle times their mean squared length (what the
///   least-squares weights cannot fit);
/// - `SampledKeys`: the key columns' squared distance times the query columns' mean squared
///   length (the kept key column stands in for the other);
///
/// times, for the query-side costs, the key columns' mean squared length
/// ([`Grouping::GramKeyWeighted`]: a query column's error reaches the scores through its key
/// column) or their squared distance ([`Grouping::GramKeyDistance`]: `Mean`'s exact error).
pub fn pair_costs(
    q: &[f64],
    k: &[f64],
    head_dim: usize,
    grouping: Grouping,
    representative: Representative,
) -> Vec<f64> {
    let at = |gram: &[f64], a: usize, b: usize| gram[a * head_dim + b];
    let distance = |gram: &[f64], a: usize, b: usize| (at(gram, a, a) + at(gram, b, b) - 2.0 * at(gram, a, b)).max(0.0);
    let mean_length = |gram: &[f64], a: usize, b: usize| (at(gram, a, a) + at(gram, b, b)) / 2.0;
    let mut costs = vec![0.0; head_dim * head_dim];
    for a in 0..head_dim {
        for b in 0..head_dim {
            let query_side = match representative {
                Representative::Sample | Representative::Mean => distance(q, a, b),
                Representative::Projected => {
                    let lengths = at(q, a, a) * at(q, b, b);
                    let cosine_squared = if lengths > 0.0 { at(q, a, b).powi(2) / lengths } else { 1.0 };
                    (1.0 - cosine_squared).max(0.0) * mean_length(q, a, b)
                }
                Representative::SampledKeys => {
                    costs[a * head_dim + b] = distance(k, a, b) * mean_length(q, a, b);
                    continue;
                }
            };
            let weight = match grouping {
                Grouping::GramKeyWeighted => mean_length(k, a, b),
                Grouping::GramKeyDistance => distance(k, a, b),
                _ => 1.0,
            };
            costs[a * head_dim + b] = query_side * weight;
        }
    }
    costs
}

/// Groups of `group_size` columns with a small total of their pairwise `costs`: greedily (the
/// cheapest free pair, then the free column cheapest to join it, until the group is full),
/// then up to [`MAX_SWAPS`] times the single swap between two groups that lowers the total the
/// most. Each group's columns in index order, groups ordered by their first column. The
/// kernels' pre-pass (`kernels_cubecl::gram_grouping`) makes the same choices in the same
/// order.
pub fn grouped_columns(costs: &[f64], head_dim: usize, group_size: usize) -> Vec<Vec<usize>> {
    // NaN and infinite costs as the kernels read them: the largest cost that still competes.
    let clamped: Vec<f64> =
        costs.iter().map(|&stored| if stored <= f64::from(MAX_DISTANCE) { stored } else { f64::from(MAX_DISTANCE) }).collect();
    let cost = |a: usize, b: usize| clamped[a * head_dim + b];
    let joining = |group: &[usize], column: usize| group.iter().map(|&member| cost(member, column)).sum::<f64>();
    let mut free = vec![true; head_dim];
    let mut groups: Vec<Vec<usize>> = Vec::with_capacity(head_dim / group_size);
    if group_size == 1 {
        return (0..head_dim).map(|column| vec![column]).collect();
    }
    while groups.len() < head_dim / group_size {
        let mut best = (f64::INFINITY, 0, 0);
        for a in (0..head_dim).filter(|&a| free[a]) {
            let row = &clamped[a * head_dim..][..head_dim];
            for b in a + 1..head_dim {
                if free[b] && row[b] < best.0 {
                    best = (row[b], a, b);
                }
            }
        }
        let mut group = vec![best.1, best.2];
        free[best.1] = false;
        free[best.2] = false;
        while group.len() < group_size {
            let column = (0..head_dim)
                .filter(|&c| free[c])
                .min_by(|&x, &y| joining(&group, x).total_cmp(&joining(&group, y)))
                .expect("head_dim is a multiple of group_size");
            free[column] = false;
            group.push(column);
        }
        groups.push(group);
    }
    // Best improvement first, as the kernels' pre-pass does it (every candidate at once, then
    // an arg-min), candidates in scan order: the first of equal changes wins.
    // `joined[g * head_dim + c]`: `joining(groups[g], c)`, kept up to date across swaps (the
    // same sums in the same order, so the same choices as evaluating each candidate afresh).
    let mut joined: Vec<f64> = groups.iter().flat_map(|group| (0..head_dim).map(|column| joining(group, column))).collect();
    for _ in 0..MAX_SWAPS {
        let mut best = (-1e-12, 0, 0, 0, 0);
        for first in 0..groups.len() {
            let first_joined = &joined[first * head_dim..][..head_dim];
            for second in first + 1..groups.len() {
                let second_joined = &joined[second * head_dim..][..head_dim];
                for i in 0..group_size {
                    for j in 0..group_size {
                        // Column `a` of the first group trades places with `b` of the second:
                        // each group loses its member's distances to the rest and gains the
                        // other's.
                        let (a, b) = (groups[first][i], groups[second][j]);
                        let first_change = (first_joined[b] - cost(a, b)) - (first_joined[a] - cost(a, a));
                        let second_change = (second_joined[a] - cost(b, a)) - (second_joined[b] - cost(b, b));
                        if first_change + second_change < best.0 {
                            best = (first_change + second_change, first, second, i, j);
                        }
                    }
                }
            }
        }
        let (change, first, second, i, j) = best;
        if change >= -1e-12 {
            break;
        }
        let a = groups[first][i];
        groups[first][i] = groups[second][j];
        groups[second][j] = a;
        for group in [first, second] {
            for column in 0..head_dim {
                joined[group * head_dim + column] = joining(&groups[group], column);
            }
        }
    }
    for group in &mut groups {
        group.sort_unstable();
    }
    groups.sort_unstable();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Gram matrix of `columns` (each a vector of rows), row-major.
    fn gram(columns: &[Vec<f64>]) -> Vec<f64> {
        let dot = |a: &Vec<f64>, b: &Vec<f64>| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        columns.iter().flat_map(|a| columns.iter().map(move |b| dot(a, b))).collect()
    }

    fn groups(
        queries: &[Vec<f64>],
        keys: &[Vec<f64>],
        grouping: Grouping,
        representative: Representative,
        size: usize,
    ) -> Vec<Vec<usize>> {
        let costs = pair_costs(&gram(queries), &gram(keys), queries.len(), grouping, representative);
        grouped_columns(&costs, queries.len(), size)
    }

    /// Columns 0 and 2 are near each other, as are 1 and 3.
    #[test]
    fn near_columns_are_paired() {
        let queries = vec![vec![1.0, 0.0], vec![0.0, 5.0], vec![1.1, 0.1], vec![0.2, 5.0]];
        let keys = vec![vec![1.0]; 4];
        assert_eq!(groups(&queries, &keys, Grouping::Gram, Representative::Mean, 2), [[0, 2], [1, 3]]);
    }

    /// Column 3 is column 0 scaled, 2 is 1 scaled: distance pairs by length, angle by
    /// direction.
    #[test]
    fn projected_pairs_by_angle() {
        let queries = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.0, 3.0], vec![3.0, 0.0]];
        let keys = vec![vec![1.0]; 4];
        assert_eq!(groups(&queries, &keys, Grouping::Gram, Representative::Projected, 2), [[0, 3], [1, 2]]);
    }

    /// Column 0 is closest to 1, and 2 to 0. Weighing by the key columns, where column 2's key
    /// is long, 2 must take its nearest partner: the greedy start pairs 0 with 1, and a swap
    /// repairs it.
    #[test]
    fn key_weights_change_the_pairing() {
        let queries = vec![vec![0.0, 0.0], vec![1.0, 0.0], vec![0.0, 1.2], vec![1.0, 2.2]];
        let plain_keys = vec![vec![1.0]; 4];
        assert_eq!(groups(&queries, &plain_keys, Grouping::Gram, Representative::Sample, 2), [[0, 1], [2, 3]]);
        let weighted_keys = vec![vec![1.0], vec![1.0], vec![10.0], vec![1.0]];
        assert_eq!(
            groups(&queries, &weighted_keys, Grouping::GramKeyWeighted, Representative::Sample, 2),
            [[0, 2], [1, 3]]
        );
    }

    /// Columns 0 and 1 have near queries but far keys, 0 and 2 far queries and equal keys:
    /// the key distance pairs 0 with 2 (and so 1 with 3), which `Mean` groups without error.
    #[test]
    fn key_distances_change_the_pairing() {
        let queries = vec![vec![0.0, 0.0], vec![1.0, 0.0], vec![0.0, 3.0], vec![1.0, 3.0]];
        let keys = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 0.0], vec![0.0, 1.0]];
        assert_eq!(groups(&queries, &keys, Grouping::Gram, Representative::Mean, 2), [[0, 1], [2, 3]]);
        assert_eq!(groups(&queries, &keys, Grouping::GramKeyDistance, Representative::Mean, 2), [[0, 2], [1, 3]]);
    }

    /// `SampledKeys` pairs by the key columns.
    #[test]
    fn sampled_keys_pair_by_keys() {
        let queries = vec![vec![1.0]; 4];
        let keys = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.9, 0.0], vec![0.0, 1.1]];
        assert_eq!(groups(&queries, &keys, Grouping::Gram, Representative::SampledKeys, 2), [[0, 2], [1, 3]]);
    }

    /// Four clusters of two: groups of four take two whole clusters.
    #[test]
    fn groups_of_four_keep_clusters_together() {
        let queries: Vec<Vec<f64>> = [0.0, 10.0, 0.1, 10.1, 30.0, 30.1, 50.0, 50.1]
            .iter()
            .map(|&x: &f64| vec![x, 1.0])
            .collect();
        let keys = vec![vec![1.0]; 8];
        assert_eq!(groups(&queries, &keys, Grouping::Gram, Representative::Mean, 4), [[0, 1, 2, 3], [4, 5, 6, 7]]);
    }
}
