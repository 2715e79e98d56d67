//! Calibration: which layers (or query heads, [`HeadSearch`]) of a model can run
//! DistrAttention, and with which group size, while a score of the whole model stays within a
//! budget. The model crate brings the score (perplexity, saliency correlation, ...); the
//! searches are the same for every model.
//!
//! Per layer ([`LayerSearch`]), greedy: layers are visited in an [`LayerOrder`]; each gets the largest group size whose
//! plan, together with every layer already assigned, keeps the score within the budget,
//! otherwise it stays exact. Every accepted choice was measured with all earlier choices in
//! place, so the final plan's score is the last accepted measurement: within budget by
//! construction.

use clap::ValueEnum;
use serde::Serialize;

use crate::{AttentionKind, DistrAttentionConfig, DistrAttentionError, ModelAttentionConfig};

mod flops;
mod heads;

pub use flops::AttentionFlops;
pub use heads::{head_errors, HeadCandidate, HeadErrorSums, HeadRanking, HeadSearch, HeadSearchResult, HeadTrial};

/// The order in which the search assigns layers.
#[derive(ValueEnum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerOrder {
    /// From the last layer to the first: early layers are the most sensitive to approximate
    /// attention, so the budget is spent first where it buys the most layers. No extra
    /// evaluations.
    LastFirst,
    /// First each layer alone with the smallest group size (the others exact); then from the
    /// least sensitive layer to the most (ties: lower index first). A layer that fails the
    /// budget alone is not tried again: with more approximate layers around it, it would only
    /// fail by more. Costs one evaluation per layer more.
    LeastSensitiveFirst,
}

/// The bound a plan's score must keep.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Lower is better (perplexity): at most this.
    AtMost(f64),
    /// Higher is better (a correlation with exact attention): at least this.
    AtLeast(f64),
}

impl Budget {
    /// Whether `score` is within the budget.
    pub fn admits(&self, score: f64) -> bool {
        match *self {
            Budget::AtMost(bound) => score <= bound,
            Budget::AtLeast(bound) => score >= bound,
        }
    }

}

/// What to search: the model's shape and the candidates.
#[derive(Debug, Clone)]
pub struct LayerSearch {
    /// Layers of the model.
    pub num_layers: usize,
    /// Query heads of every layer.
    pub num_heads: usize,
    /// Head dimension of every layer: each group size must divide it.
    pub head_dim: usize,
    /// Group sizes to try per layer (tried largest first), each at least 2.
    pub group_sizes: Vec<usize>,
    /// DistrAttention parameters besides the group size.
    pub distr: DistrAttentionConfig,
    /// The order in which layers are assigned.
    pub order: LayerOrder,
}

/// One evaluated plan.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Trial {
    /// The layer tried.
    pub layer: usize,
    /// Its group size in the trial.
    pub group_size: usize,
    /// The model's score with the trial's plan.
    pub score: f64,
    /// Whether the score is within the budget (for `alone` trials: whether the layer stays a
    /// candidate).
    pub accepted: bool,
    /// A sensitivity trial: this layer alone approximate.
    pub alone: bool,
}

/// What the search chose, and the measurements behind it.
#[derive(Serialize, Debug, Clone)]
pub struct SearchResult {
    /// One entry per layer; save it for the command lines' `--config`.
    pub plan: ModelAttentionConfig,
    /// Group size per layer, 1 for exact.
    pub group_sizes: Vec<usize>,
    /// The order in which layers were visited.
    pub order: Vec<usize>,
    /// Per layer, its score alone with the smallest group size (with
    /// [`LayerOrder::LeastSensitiveFirst`]).
    pub sensitivity: Vec<Option<f64>>,
    /// The plan's score: the last accepted trial's; `None` when every layer stayed exact.
    pub score: Option<f64>,
    /// Every evaluation, in order.
    pub trials: Vec<Trial>,
}

impl LayerSearch {
    /// Checks the candidates against the model before any evaluation.
    pub fn validate(&self) -> Result<(), DistrAttentionError> {
        let invalid = |name, value: String, expected: &str| DistrAttentionError::InvalidParameter {
            name,
            value,
            expected: expected.to_string(),
        };
        if self.group_sizes.is_empty() || self.group_sizes.iter().any(|&group_size| group_size < 2) {
            return Err(invalid("group_sizes", format!("{:?}", self.group_sizes), "at least one group size, each at least 2"));
        }
        for &group_size in &self.group_sizes {
            ModelAttentionConfig::distr(self.distr.clone().with_group_size(group_size)).check(self.num_layers, self.num_heads, self.head_dim)?;
        }
        Ok(())
    }

    /// The most evaluations the search may take, for progress bars.
    pub fn max_trials(&self) -> usize {
        let sensitivity = match self.order {
            LayerOrder::LastFirst => 0,
            LayerOrder::LeastSensitiveFirst => self.num_layers,
        };
        sensitivity + self.num_layers * self.group_sizes.len()
    }

    /// Runs the search within `budget`. `score` evaluates the model with a plan; `on_trial`
    /// sees every evaluation as it is made.
    pub fn run<E: From<DistrAttentionError>>(
        &self,
        budget: Budget,
        mut score: impl FnMut(&ModelAttentionConfig) -> Result<f64, E>,
        mut on_trial: impl FnMut(&Trial),
    ) -> Result<SearchResult, E> {
        self.validate()?;
        let mut group_sizes = self.group_sizes.clone();
        group_sizes.sort_unstable_by(|a, b| b.cmp(a));
        group_sizes.dedup();
        let smallest = group_sizes[group_sizes.len() - 1];
        let kind = |group_size: usize| AttentionKind::Distr(self.distr.clone().with_group_size(group_size));
        let plan_of = |kinds: &[AttentionKind]| ModelAttentionConfig::exact().with_per_layer(kinds.to_vec());
        let mut trials = Vec::new();
        let mut record = |trial: Trial, trials: &mut Vec<Trial>| {
            on_trial(&trial);
            trials.push(trial);
        };

        let mut sensitivity = vec![None; self.num_layers];
        let order: Vec<usize> = match self.order {
            LayerOrder::LastFirst => (0..self.num_layers).rev().collect(),
            LayerOrder::LeastSensitiveFirst => {
                for layer in 0..self.num_layers {
                    let mut kinds = vec![AttentionKind::Exact; self.num_layers];
                    kinds[layer] = kind(smallest);
                    let alone = score(&plan_of(&kinds))?;
                    sensitivity[layer] = Some(alone);
                    let accepted = budget.admits(alone);
                    record(Trial { layer, group_size: smallest, score: alone, accepted, alone: true }, &mut trials);
                }
                let alone = |layer: usize| sensitivity[layer].unwrap_or(f64::NAN);
                let mut order: Vec<usize> = (0..self.num_layers).collect();
                // Least sensitive first: the best score alone, whichever way the budget points.
                order.sort_by(|&a, &b| {
                    let by_score = match budget {
                        Budget::AtMost(_) => alone(a).total_cmp(&alone(b)),
                        Budget::AtLeast(_) => alone(b).total_cmp(&alone(a)),
                    };
                    by_score.then(a.cmp(&b))
                });
                order
            }
        };

        let mut kinds = vec![AttentionKind::Exact; self.num_layers];
        let mut chosen = vec![1; self.num_layers];
        let mut plan_score = None;
        for &layer in &order {
            if sensitivity[layer].is_some_and(|alone| !budget.admits(alone)) {
                continue;
            }
            for &group_size in &group_sizes {
                let mut candidate = kinds.clone();
                candidate[layer] = kind(group_size);
                let measured = score(&plan_of(&candidate))?;
                let accepted = budget.admits(measured);
                record(Trial { layer, group_size, score: measured, accepted, alone: false }, &mut trials);
                if accepted {
                    kinds = candidate;
                    chosen[layer] = group_size;
                    plan_score = Some(measured);
                    break;
                }
            }
        }
        Ok(SearchResult {
            plan: plan_of(&kinds),
            group_sizes: chosen,
            order,
            sensitivity,
            score: plan_score,
            trials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model whose score is the sum over layers of `cost[layer] * (1 - 1/G)`: higher group
    /// sizes and more sensitive layers cost more.
    fn score(plan: &ModelAttentionConfig, costs: &[f64]) -> Result<f64, DistrAttentionError> {
        let mut total = 0.0;
        for (layer, cost) in costs.iter().enumerate() {
            let group_size = plan.kind_for_layer(layer, costs.len())?.head_configs(1)[0].group_size as f64;
            total += cost * (1.0 - 1.0 / group_size);
        }
        Ok(total)
    }

    fn search(order: LayerOrder) -> LayerSearch {
        LayerSearch { num_layers: 3, num_heads: 2, head_dim: 16, group_sizes: vec![2, 4], distr: DistrAttentionConfig::new(), order }
    }

    #[test]
    fn last_first_spends_the_budget_from_the_last_layer() {
        let costs = [1.0, 1.0, 1.0];
        let result = search(LayerOrder::LastFirst).run(Budget::AtMost(1.0), |plan| score(plan, &costs), |_| {}).unwrap();
        // Layer 2 takes G=4 (0.75), layer 1 only fits nothing more than 0.25: G=2 costs 0.5.
        assert_eq!(result.group_sizes, vec![1, 1, 4]);
        assert_eq!(result.order, vec![2, 1, 0]);
        assert_eq!(result.score, Some(0.75));
        assert_eq!(result.trials.len(), 5);
        assert!(result.sensitivity.iter().all(Option::is_none));
    }

    #[test]
    fn least_sensitive_first_orders_by_the_score_alone_and_skips_what_fails_alone() {
        let costs = [0.1, 3.0, 0.6];
        let budget = Budget::AtLeast(-0.5);
        let negated = |plan: &ModelAttentionConfig| score(plan, &costs).map(|s| -s);
        let mut seen = 0;
        let result = search(LayerOrder::LeastSensitiveFirst).run(budget, negated, |_| seen += 1).unwrap();
        assert_eq!(result.order, vec![0, 2, 1]);
        // Layer 2 would take G=4 alone, but not next to layer 0's G=4.
        assert_eq!(result.group_sizes, vec![4, 1, 2]);
        assert_eq!(seen, result.trials.len());
        assert!(result.trials.iter().all(|trial| trial.layer != 1 || trial.alone), "layer 1 fails alone");
        assert!(budget.admits(result.score.unwrap()));
        assert_eq!(result.plan.kind_for_layer(1, 3).unwrap(), AttentionKind::Exact);
    }

    #[test]
    fn bad_candidates_fail_before_any_evaluation() {
        let mut bad = search(LayerOrder::LastFirst);
        let never = |_: &ModelAttentionConfig| -> Result<f64, DistrAttentionError> { panic!("evaluated") };
        for group_sizes in [vec![3], vec![1, 2], vec![]] {
            bad.group_sizes = group_sizes;
            assert!(bad.run(Budget::AtMost(1.0), never, |_| {}).is_err());
        }
    }
}
