//! What a plan saves, counted: attention forward FLOPs of one sequence through a model.

use serde::Serialize;

use crate::{DistrAttentionError, ModelAttentionConfig};

/// Attention forward FLOPs of one sequence through a model (`../shared/DISTR_ATTENTION.md`,
/// "Cost"), exact against a plan. Exact attention costs `4 N² d` per head (`Q Kᵀ` and `P V`);
/// DistrAttention with group size G `2 N² d / G + 2 N² d`, plus forming the groups
/// ([`crate::Grouping::flops`]: `2 N d P` for the LSH codes), counted head by head.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct AttentionFlops {
    /// Tokens of the sequence.
    pub tokens: usize,
    /// Exact attention in every layer.
    pub exact: f64,
    /// With the plan (the prefill's, for models that decode: decode steps are not counted).
    pub planned: f64,
    /// `1 - planned / exact`; negative where hashing costs more than grouping saves.
    pub saved_fraction: f64,
    /// The same for the score product `Q Kᵀ` alone (with forming the groups), the part
    /// DistrAttention shrinks: at most `1 - 1/G` of it.
    pub score_product_saved_fraction: f64,
}

impl AttentionFlops {
    /// The FLOPs of `plan` on a model of `num_layers` layers of `heads` query heads of
    /// `head_dim`, for a sequence of `tokens`.
    pub fn of(plan: &ModelAttentionConfig, num_layers: usize, heads: usize, head_dim: usize, tokens: usize) -> Result<Self, DistrAttentionError> {
        let [n, d] = [tokens as f64, head_dim as f64];
        // Per head: `Q Kᵀ` and `P V` each cost this exactly.
        let product = 2.0 * n * n * d;
        let mut planned_scores = 0.0;
        for layer in 0..num_layers {
            for op in plan.kind_for_call(layer, num_layers, tokens)?.head_configs(heads) {
                planned_scores += product / op.group_size as f64;
                if !op.is_exact() {
                    planned_scores += op.grouping.flops(op.representative, tokens, head_dim, op.num_projections);
                }
            }
        }
        let exact_scores = product * (num_layers * heads) as f64;
        let [exact, planned] = [2.0 * exact_scores, planned_scores + exact_scores];
        Ok(Self {
            tokens,
            exact,
            planned,
            saved_fraction: 1.0 - planned / exact,
            score_product_saved_fraction: 1.0 - planned_scores / exact_scores,
        })
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttentionKind, DistrAttentionConfig, Grouping, Representative};

    #[test]
    fn flops_count_hashing_and_saved_score_products() {
        let plan = ModelAttentionConfig::exact().with_per_layer(vec![
            AttentionKind::Exact,
            AttentionKind::Distr(DistrAttentionConfig::new().with_group_size(2).with_num_projections(8)),
        ]);
        let (n, d) = (100.0, 4.0);
        let flops = AttentionFlops::of(&plan, 2, 1, 4, 100).unwrap();
        assert_eq!(flops.exact, 2.0 * 4.0 * n * n * d);
        let hashing = 2.0 * n * d * 8.0;
        assert_eq!(flops.planned, 4.0 * n * n * d + (n * n * d + 2.0 * n * n * d + hashing));
        assert!(flops.saved_fraction > 0.0 && flops.saved_fraction < 0.125);
        // At a few tokens the hashing costs more than grouping saves.
        assert!(AttentionFlops::of(&plan, 2, 1, 4, 10).unwrap().saved_fraction < 0.0);
        // The Gram grouping with Mean: the query columns' pairwise distances.
        let gram = ModelAttentionConfig::exact().with_per_layer(vec![AttentionKind::Distr(
            DistrAttentionConfig::new().with_group_size(2).with_grouping(Grouping::Gram).with_representative(Representative::Mean),
        )]);
        let distances = 3.0 * n * (d * (d - 1.0) / 2.0);
        assert_eq!(AttentionFlops::of(&gram, 1, 1, 4, 100).unwrap().planned, n * n * d + 2.0 * n * n * d + distances);
    }

    #[test]
    fn per_head_plans_are_counted_head_by_head() {
        let g2 = DistrAttentionConfig::new().with_grouping(Grouping::IndexOrder);
        let g4 = g2.clone().with_group_size(4);
        let per_head = AttentionKind::PerHead(vec![DistrAttentionConfig::exact(), g2, g4.clone(), g4]);
        let plan = ModelAttentionConfig::exact().with_per_layer(vec![per_head]);
        let flops = AttentionFlops::of(&plan, 1, 4, 8, 50).unwrap();
        // Score products 1 + 1/2 + 1/4 + 1/4 of four exact heads' (no grouping FLOPs for index order).
        assert_eq!(flops.score_product_saved_fraction, 0.5);
        assert_eq!(flops.saved_fraction, 0.25);
    }
}
