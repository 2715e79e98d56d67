//! The grouped scores as ordinary scores of an expanded query.
//!
//! Step 7's product `Q' K'^T` sums, for every group, the representative times the sum of the
//! group's (weighted) key columns. Distributing the product over that sum gives
//! `S = Q' K'^T = Q'' K^T`, where column `c` of the expanded query `Q''` `[batch, heads,
//! seq_q, head_dim]` holds the representative of `c`'s group in `c`'s block, times the weight
//! with which `K'` takes key column `c`: 1 for `Sample` and `Mean`, the least-squares
//! coefficient for `Projected`, 1 for a group's first member and 0 for the others under
//! `SampledKeys`. DistrAttention is therefore exact attention on `(Q'', K, V)`: any exact
//! attention (Burn's own, a fused kernel, its backward) runs it, with `Q''` costing
//! `O(seq_q * head_dim)` to form instead of the `[blocks, seq_k, head_dim]` fused keys of each
//! head. It does not save the grouping's FLOPs (the product is `head_dim` wide again); it is
//! how the op runs where no kernel forms `K'` itself.
//!
//! The permutation comes from [`block_permutations`] on detached inputs, as in the reference,
//! so `Q''` is a differentiable function of the query alone.
//!
//! One difference from the step-by-step reference on inputs that are not finite: under
//! `SampledKeys` an unsampled key column still enters the product (times 0), so an Inf or NaN
//! there reaches the block's scores as NaN where the reference leaves the column out.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::grouping::{block_permutations, group_columns, projection_weights, representative_queries, split_blocks};
use super::to_accumulation;
use crate::{AttentionProblem, Representative};

/// `Q''` `[batch, heads, seq_q, head_dim]` for `query` `[batch, heads, seq_q, head_dim]` and
/// `key` `[batch, kv_heads, seq_k, head_dim]` (read for the `Gram` groupings only), in the
/// reference's accumulation dtype (f32 for half-precision inputs, where the reference groups
/// too, so that the permutations are the reference's). For exact attention (`group_size` 1) it
/// is the query itself.
pub fn expanded_query<B: Backend>(query: Tensor<B, 4>, key: Tensor<B, 4>, problem: &AttentionProblem) -> Tensor<B, 4> {
    let config = &problem.config;
    if config.is_exact() {
        return query;
    }
    let [query, key] = [query, key].map(to_accumulation);
    let [batch, heads, seq_q, head_dim] = query.dims();
    let group_size = config.group_size;
    let num_blocks = problem.num_blocks();
    let block_rows = config.block_rows;

    let blocks = split_blocks(query, block_rows);
    let permutation = block_permutations(blocks.clone().detach(), key.detach(), problem);
    let query_groups = group_columns(blocks.swap_dims(3, 4), permutation.clone(), group_size);
    // `[batch, heads, blocks, block_rows, head_dim / group_size]`
    let representatives = representative_queries(query_groups.clone(), problem);

    // Each column's position in its block's sorted order, and from it its group.
    let position = permutation.argsort(3);
    let group = position.clone().div_scalar(group_size as i64);
    let rows = |index: Tensor<B, 4, Int>| index.unsqueeze_dim::<5>(3).expand([batch, heads, num_blocks, block_rows, head_dim]);
    let expanded = representatives.clone().gather(4, rows(group));

    let expanded = match config.representative {
        Representative::Sample | Representative::Mean => expanded,
        Representative::SampledKeys => {
            let first_member = position.remainder_scalar(group_size as i64).equal_elem(0);
            let first_member = first_member.unsqueeze_dim::<5>(3).expand([batch, heads, num_blocks, block_rows, head_dim]);
            expanded.mask_fill(first_member.bool_not(), 0.0)
        }
        Representative::Projected => {
            // `[batch, heads, blocks, head_dim]` in sorted order, then in column order.
            let weights = projection_weights(query_groups, representatives).reshape([batch, heads, num_blocks, head_dim]);
            let weights = weights.gather(3, position);
            expanded * weights.unsqueeze_dim::<5>(3)
        }
    };
    expanded.reshape([batch, heads, num_blocks * block_rows, head_dim]).narrow(2, 0, seq_q)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::reference::distr_attention_reference;
    use crate::tests::TestBackend;
    use crate::{DistrAttentionConfig, Grouping};

    /// Every representative and grouping, grouped-query heads, a padded last block, causal
    /// with fewer queries than keys and not: the reference on `(Q, K, V)` equals exact
    /// attention on `(Q'', K, V)`.
    #[test]
    fn distr_attention_is_exact_attention_on_the_expanded_query() {
        let device = Default::default();
        let groupings = [
            Grouping::Lsh,
            Grouping::LshStrided,
            Grouping::LshNorms,
            Grouping::Random,
            Grouping::IndexOrder,
            Grouping::Gram,
            Grouping::GramKeyWeighted,
            Grouping::GramKeyDistance,
        ];
        let representatives =
            [Representative::Sample, Representative::Mean, Representative::SampledKeys, Representative::Projected];
        let [heads, kv_heads, head_dim] = [4, 2, 16];
        for (causal, seq_q, seq_k) in [(false, 37, 29), (true, 21, 40)] {
            let random = |heads, seq| Tensor::<TestBackend, 4>::random([2, heads, seq, head_dim], Distribution::Normal(0.0, 1.0), &device);
            let [query, key, value] = [random(heads, seq_q), random(kv_heads, seq_k), random(kv_heads, seq_k)];
            for grouping in groupings {
                for representative in representatives {
                    for group_size in [2, 4] {
                        let config = DistrAttentionConfig::new()
                            .with_group_size(group_size)
                            .with_block_rows(16)
                            .with_grouping(grouping)
                            .with_representative(representative)
                            .with_causal(causal);
                        let problem = AttentionProblem::check(&query, &key, &value, None, &config).unwrap();
                        let exact = AttentionProblem::check(&query, &key, &value, None, &config.clone().with_group_size(1)).unwrap();
                        let expected = distr_attention_reference(query.clone(), key.clone(), value.clone(), None, &problem);
                        let expanded = expanded_query(query.clone(), key.clone(), &problem);
                        let actual = distr_attention_reference(expanded, key.clone(), value.clone(), None, &exact);
                        let difference: f32 = (actual - expected).abs().max().into_scalar();
                        assert!(
                            difference < 1e-5,
                            "{grouping:?} {representative:?} G={group_size} causal={causal}: largest difference {difference}"
                        );
                    }
                }
            }
        }
    }

    /// The gradients with respect to query, key and value through the expansion equal the
    /// step-by-step reference's (the permutation a constant in both).
    #[test]
    fn gradients_through_the_expanded_query_are_the_references() {
        type Tracked = burn::backend::Autodiff<TestBackend>;
        let device = Default::default();
        let [heads, kv_heads, head_dim, seq] = [4, 2, 16, 37];
        let random = |heads| Tensor::<TestBackend, 4>::random([1, heads, seq, head_dim], Distribution::Normal(0.0, 1.0), &device);
        let inputs = [random(heads), random(kv_heads), random(kv_heads)];
        let weights = Tensor::<Tracked, 4>::from_inner(random(heads));
        for representative in [Representative::Mean, Representative::Projected, Representative::SampledKeys] {
            let config = DistrAttentionConfig::new()
                .with_block_rows(16)
                .with_representative(representative)
                .with_grouping(Grouping::Gram)
                .with_causal(true);
            let gradients = |expand: bool| {
                let [query, key, value] = inputs.clone().map(|tensor| Tensor::<Tracked, 4>::from_inner(tensor).require_grad());
                let problem = AttentionProblem::check(&query, &key, &value, None, &config).unwrap();
                let output = if expand {
                    let expanded = expanded_query(query.clone(), key.clone(), &problem);
                    distr_attention_reference(expanded, key.clone(), value.clone(), None, &problem.expanded())
                } else {
                    distr_attention_reference(query.clone(), key.clone(), value.clone(), None, &problem)
                };
                let gradients = (output * weights.clone()).sum().backward();
                [query, key, value].map(|tensor| tensor.grad(&gradients).expect("a gradient for every input"))
            };
            let [expanded, reference] = [gradients(true), gradients(false)];
            for (name, (actual, expected)) in ["query", "key", "value"].iter().zip(expanded.into_iter().zip(reference)) {
                let difference: f32 = (actual - expected).abs().max().into_scalar();
                assert!(difference < 1e-4, "{representative:?}: {name} gradients differ by {difference}");
            }
        }
    }
}
