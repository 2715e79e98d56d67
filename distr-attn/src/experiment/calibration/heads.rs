//! Per-head calibration: which query heads of which layers run DistrAttention, and with which
//! group size, within a budget on the whole model's score.
//!
//! Per layer, each of SmolLM2's early layers alone at G = 2 costs 2-20% of perplexity, so a 1%
//! budget admits one or two layers (`distr-llama/RESULTS.md`); but a layer's heads may tolerate
//! the approximation very differently. The search ranks the candidates (layer, head, group
//! size), least harmful first ([`HeadRanking`]): by an error measured on the model's own
//! activations with everything else exact ([`head_errors`]), which costs one exact pass, or by
//! the model's score with each candidate alone approximate, which costs one evaluation per
//! candidate (hundreds) and measures what the budget is on. A prefix of that ranking is a plan: each head takes the largest group size
//! among its candidates in the prefix. Bisection finds the longest prefix whose score is within
//! the budget, assuming that a longer prefix scores no better (true up to noise); each further
//! round drops the candidate that ended the last one (and that head's larger group sizes) and
//! bisects the rest with the found prefix kept. At most `rounds * ceil(log2(candidates + 1))`
//! evaluations: 10 a round for SmolLM2's 810 candidates (30 layers, 9 heads, 3 group sizes).
//! The plan's score is its last accepted measurement: within budget by construction.

use std::fmt;

use burn::tensor::{FloatDType, Tensor};
use clap::ValueEnum;
use serde::Serialize;

use super::Budget;
use crate::{AttentionKind, DistrAttentionBackend, DistrAttentionConfig, DistrAttentionError, ModelAttentionConfig};

/// One query head of one layer at one group size, and how much error it adds alone.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct HeadCandidate {
    pub layer: usize,
    pub head: usize,
    pub group_size: usize,
    /// The ranking's key, least first (for instance [`head_errors`] relative to the layer's
    /// residual stream).
    pub error: f64,
}

/// How the candidates are ranked, least harmful first.
#[derive(ValueEnum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRanking {
    /// By the error each adds alone to the residual stream on the model's own activations
    /// ([`head_errors`]): one exact pass over the calibration data, no score evaluated.
    Local,
    /// By the model's score with each alone approximate ([`HeadSearch::rank_alone`]): one
    /// evaluation per candidate, of the score the budget is on. Candidates that fail the
    /// budget alone are left out.
    Alone,
}

/// What to search: the model's shape and the candidates' parameters.
#[derive(Debug, Clone)]
pub struct HeadSearch {
    /// Layers of the model.
    pub num_layers: usize,
    /// Query heads of every layer.
    pub num_heads: usize,
    /// Head dimension of every layer: each group size must divide it.
    pub head_dim: usize,
    /// Group sizes a head may take, each at least 2.
    pub group_sizes: Vec<usize>,
    /// DistrAttention parameters besides the group size.
    pub distr: DistrAttentionConfig,
    /// Rounds of bisection, at least 1.
    pub rounds: usize,
    /// How the model crate ranks the candidates.
    pub ranking: HeadRanking,
}

/// One evaluated plan: a prefix of the ranking, or one candidate alone while ranking.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct HeadTrial {
    /// The bisection round, from 0; `None` for a ranking trial.
    pub round: Option<usize>,
    /// Candidates in the plan: those kept from earlier rounds and the prefix tried (1 for a
    /// ranking trial).
    pub candidates: usize,
    /// For a ranking trial ([`HeadRanking::Alone`]), the candidate alone approximate.
    pub alone: Option<HeadCandidate>,
    /// The model's score with the plan.
    pub score: f64,
    /// Whether the score is within the budget.
    pub accepted: bool,
}

impl fmt::Display for HeadTrial {
    /// What was tried, for progress bars: "layer 3 head 1 G=2 alone" or "round 0, 17
    /// candidates".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.alone {
            Some(alone) => write!(f, "layer {} head {} G={} alone", alone.layer, alone.head, alone.group_size),
            None => write!(f, "round {}, {} candidates", self.round.unwrap_or(0), self.candidates),
        }
    }
}

/// What the search chose, and the measurements behind it.
#[derive(Serialize, Debug, Clone)]
pub struct HeadSearchResult {
    /// One entry per layer; save it for the command lines' `--config`.
    pub plan: ModelAttentionConfig,
    /// Group size per layer and head, 1 for exact.
    pub group_sizes: Vec<Vec<usize>>,
    /// How the candidates were ranked.
    pub ranked_by: HeadRanking,
    /// Every candidate, in rank order.
    pub ranking: Vec<HeadCandidate>,
    /// Per candidate of `ranking`, whether the plan holds it.
    pub chosen: Vec<bool>,
    /// The plan's score: the last accepted trial's; `None` when every head stayed exact.
    pub score: Option<f64>,
    /// Every evaluation, in order.
    pub trials: Vec<HeadTrial>,
}

impl HeadSearch {
    /// Checks the candidates' parameters against the model before any evaluation.
    pub fn validate(&self) -> Result<(), DistrAttentionError> {
        if self.group_sizes.is_empty() || self.group_sizes.iter().any(|&group_size| group_size < 2) {
            return Err(DistrAttentionError::InvalidParameter {
                name: "group_sizes",
                value: format!("{:?}", self.group_sizes),
                expected: "at least one group size, each at least 2".into(),
            });
        }
        if self.rounds == 0 {
            return Err(DistrAttentionError::InvalidParameter {
                name: "rounds",
                value: "0".into(),
                expected: "at least 1".into(),
            });
        }
        for &group_size in &self.group_sizes {
            ModelAttentionConfig::distr(self.distr.clone().with_group_size(group_size)).check(
                self.num_layers,
                self.num_heads,
                self.head_dim,
            )?;
        }
        Ok(())
    }

    /// Every candidate of the model, for a ranking to score.
    pub fn candidates(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        (0..self.num_layers).flat_map(move |layer| {
            (0..self.num_heads).flat_map(move |head| self.group_sizes.iter().map(move |&group_size| (layer, head, group_size)))
        })
    }

    /// The most evaluations the search may take (the ranking's included), for progress bars.
    pub fn max_trials(&self) -> usize {
        let candidates = self.num_layers * self.num_heads * self.group_sizes.len();
        let ranking = match self.ranking {
            HeadRanking::Local => 0,
            HeadRanking::Alone => candidates,
        };
        ranking + self.rounds * (usize::BITS - candidates.leading_zeros()) as usize
    }

    /// Every candidate ranked by the model's score with it alone approximate, the rest exact
    /// ([`HeadRanking::Alone`]); `error` is the score, negated where higher is better.
    /// Candidates that fail `budget` alone are left out: with more approximate heads around
    /// them they would fail by more. `on_trial` sees every evaluation.
    pub fn rank_alone<E: From<DistrAttentionError>>(
        &self,
        budget: Budget,
        mut score: impl FnMut(&ModelAttentionConfig) -> Result<f64, E>,
        mut on_trial: impl FnMut(&HeadTrial),
    ) -> Result<Vec<HeadCandidate>, E> {
        self.validate()?;
        let mut ranking = Vec::new();
        for (layer, head, group_size) in self.candidates() {
            let candidate = HeadCandidate { layer, head, group_size, error: 0.0 };
            let measured = score(&self.plan_of([&candidate]).0)?;
            let accepted = budget.admits(measured);
            let error = match budget {
                Budget::AtMost(_) => measured,
                Budget::AtLeast(_) => -measured,
            };
            let candidate = HeadCandidate { error, ..candidate };
            on_trial(&HeadTrial { round: None, candidates: 1, alone: Some(candidate.clone()), score: measured, accepted });
            if accepted {
                ranking.push(candidate);
            }
        }
        Ok(ranking)
    }

    /// The plan in which each head takes the largest group size among `chosen` candidates
    /// (1, exact, if none), and those group sizes per layer and head.
    pub fn plan_of<'a>(&self, chosen: impl IntoIterator<Item = &'a HeadCandidate>) -> (ModelAttentionConfig, Vec<Vec<usize>>) {
        let mut group_sizes = vec![vec![1; self.num_heads]; self.num_layers];
        for candidate in chosen {
            let size = &mut group_sizes[candidate.layer][candidate.head];
            *size = (*size).max(candidate.group_size);
        }
        let kinds = group_sizes
            .iter()
            .map(|heads| {
                let config = |group_size: usize| match group_size {
                    1 => DistrAttentionConfig::exact(),
                    _ => self.distr.clone().with_group_size(group_size),
                };
                if heads.iter().all(|&group_size| group_size == 1) {
                    AttentionKind::Exact
                } else if heads.iter().all(|&group_size| group_size == heads[0]) {
                    AttentionKind::Distr(config(heads[0]))
                } else {
                    AttentionKind::PerHead(heads.iter().map(|&group_size| config(group_size)).collect())
                }
            })
            .collect();
        (ModelAttentionConfig::exact().with_per_layer(kinds), group_sizes)
    }

    /// Runs the search over `candidates` (each a layer, head and group size of this search,
    /// ranked by `error`) within `budget`. `score` evaluates the model with a plan; `on_trial`
    /// sees every evaluation as it is made.
    pub fn run<E: From<DistrAttentionError>>(
        &self,
        budget: Budget,
        mut ranking: Vec<HeadCandidate>,
        mut score: impl FnMut(&ModelAttentionConfig) -> Result<f64, E>,
        mut on_trial: impl FnMut(&HeadTrial),
    ) -> Result<HeadSearchResult, E> {
        self.validate()?;
        if let Some(bad) = ranking.iter().find(|candidate| {
            candidate.layer >= self.num_layers || candidate.head >= self.num_heads || !self.group_sizes.contains(&candidate.group_size)
        }) {
            return Err(DistrAttentionError::InvalidParameter {
                name: "candidate",
                value: format!("layer {} head {} G={}", bad.layer, bad.head, bad.group_size),
                expected: format!(
                    "a layer below {}, a head below {} and a group size of {:?}",
                    self.num_layers, self.num_heads, self.group_sizes
                ),
            }
            .into());
        }
        ranking.sort_by(|a, b| {
            a.error
                .total_cmp(&b.error)
                .then((a.layer, a.head, a.group_size).cmp(&(b.layer, b.head, b.group_size)))
        });
        let mut kept: Vec<usize> = Vec::new();
        let mut rest: Vec<usize> = (0..ranking.len()).collect();
        let mut plan_score = None;
        let mut trials = Vec::new();
        for round in 0..self.rounds {
            // `lo` candidates of `rest` are known to fit, `hi` not (or untried past the end).
            let (mut lo, mut hi) = (0, rest.len() + 1);
            while hi - lo > 1 {
                let mid = (lo + hi) / 2;
                let chosen = kept.iter().chain(&rest[..mid]).map(|&index| &ranking[index]);
                let measured = score(&self.plan_of(chosen).0)?;
                let accepted = budget.admits(measured);
                let trial = HeadTrial { round: Some(round), candidates: kept.len() + mid, alone: None, score: measured, accepted };
                on_trial(&trial);
                trials.push(trial);
                if accepted {
                    lo = mid;
                    plan_score = Some(measured);
                } else {
                    hi = mid;
                }
            }
            kept.extend(rest.drain(..lo));
            let Some(&failed) = rest.first() else { break };
            let failed = &ranking[failed];
            // The head that ended the round does not take this group size or a larger one.
            rest.retain(|&index| {
                let other = &ranking[index];
                !(other.layer == failed.layer && other.head == failed.head && other.group_size >= failed.group_size)
            });
        }
        let mut chosen = vec![false; ranking.len()];
        for &index in &kept {
            chosen[index] = true;
        }
        let (plan, group_sizes) = self.plan_of(kept.iter().map(|&index| &ranking[index]));
        Ok(HeadSearchResult { plan, group_sizes, ranked_by: self.ranking, ranking, chosen, score: plan_score, trials })
    }
}

/// How far each query head's output moves when `config` replaces exact attention, as the
/// layer's output projection passes it on: per head `h`, the squared norm of
/// `(O'_h - O_h) W_o[h]` summed over batch and rows, where `W_o[h]` are the rows of the output
/// projection's weight `[heads * value_dim, d_model]` (Burn's `Linear` layout) that read head
/// `h`. Computed in f32. The caller sums these over its activations and divides by what they
/// perturb (the residual stream's squared norm), so that heads of different layers compare.
pub fn head_errors<B: DistrAttentionBackend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    output_weight: Tensor<B, 2>,
    config: &DistrAttentionConfig,
) -> Result<Vec<f64>, DistrAttentionError> {
    let [batch, heads, seq, _] = query.dims();
    let value_dim = value.dims()[3];
    let [rows, d_model] = output_weight.dims();
    if rows != heads * value_dim {
        return Err(DistrAttentionError::Shape {
            tensor: "output_weight",
            actual: vec![rows, d_model],
            expected: format!("[{} (heads x value_dim), d_model]", heads * value_dim),
        });
    }
    let exact = crate::distr_attention(query.clone(), key.clone(), value.clone(), None, &config.clone().with_group_size(1))?;
    let approximate = crate::distr_attention(query, key, value, None, config)?;
    let moved = (approximate.cast(FloatDType::F32) - exact.cast(FloatDType::F32))
        .swap_dims(0, 1)
        .reshape([heads, batch * seq, value_dim])
        .matmul(output_weight.cast(FloatDType::F32).reshape([heads, value_dim, d_model]));
    let per_head = moved.powi_scalar(2).sum_dim(2).sum_dim(1).reshape([heads]);
    let per_head: Vec<f32> = per_head.into_data().to_vec().map_err(read_back)?;
    Ok(per_head.into_iter().map(f64::from).collect())
}

/// The local ranking's sums ([`HeadRanking::Local`]): [`head_errors`] per layer, head and
/// group size summed over a model's calibration inputs, and the squared norm of the residual
/// stream each layer's attention adds to.
#[derive(Debug, Clone)]
pub struct HeadErrorSums {
    /// `[layer][head][index in group_sizes]`
    moved: Vec<Vec<Vec<f64>>>,
    residual: Vec<f64>,
}

impl HeadErrorSums {
    /// Zero sums for the candidates of `search`.
    pub fn new(search: &HeadSearch) -> Self {
        Self {
            moved: vec![vec![vec![0.0; search.group_sizes.len()]; search.num_heads]; search.num_layers],
            residual: vec![0.0; search.num_layers],
        }
    }

    /// Adds one input's layer `layer`: its attention's queries, keys and values, the weight
    /// that carries each head's output into the residual stream (see [`head_errors`]), and the
    /// residual stream `[batch, seq, d_model]` it is added to; `causal` as the model attends.
    #[allow(clippy::too_many_arguments)]
    pub fn add<B: DistrAttentionBackend>(
        &mut self,
        search: &HeadSearch,
        layer: usize,
        [query, key, value]: [Tensor<B, 4>; 3],
        output_weight: Tensor<B, 2>,
        residual: Tensor<B, 3>,
        causal: bool,
    ) -> Result<(), DistrAttentionError> {
        let norm: Vec<f32> = residual.cast(FloatDType::F32).powi_scalar(2).sum().into_data().to_vec().map_err(read_back)?;
        self.residual[layer] += f64::from(norm[0]);
        for (index, &group_size) in search.group_sizes.iter().enumerate() {
            let config = search.distr.clone().with_group_size(group_size).with_causal(causal);
            let errors = head_errors(query.clone(), key.clone(), value.clone(), output_weight.clone(), &config)?;
            for (head, error) in errors.into_iter().enumerate() {
                self.moved[layer][head][index] += error;
            }
        }
        Ok(())
    }

    /// Every candidate with its error: the root of its summed squared error over its layer's
    /// summed squared residual norm.
    pub fn ranking(&self, search: &HeadSearch) -> Vec<HeadCandidate> {
        let mut ranking = Vec::new();
        for (layer, heads) in self.moved.iter().enumerate() {
            for (head, sizes) in heads.iter().enumerate() {
                for (&group_size, &error) in search.group_sizes.iter().zip(sizes) {
                    ranking.push(HeadCandidate { layer, head, group_size, error: (error / self.residual[layer]).sqrt() });
                }
            }
        }
        ranking
    }
}

fn read_back(error: burn::tensor::DataError) -> DistrAttentionError {
    DistrAttentionError::DType { tensor: "head errors", dtype: format!("{error:?}") }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};

    use super::*;
    use crate::tests::TestBackend;

    fn search() -> HeadSearch {
        HeadSearch {
            num_layers: 2,
            num_heads: 3,
            head_dim: 16,
            group_sizes: vec![2, 4],
            distr: DistrAttentionConfig::new(),
            rounds: 1,
            ranking: HeadRanking::Local,
        }
    }

    /// Candidates with `error`, and a model whose score is the sum of the chosen heads' costs.
    fn ranked(errors: &[((usize, usize, usize), f64)]) -> Vec<HeadCandidate> {
        errors
            .iter()
            .map(|&((layer, head, group_size), error)| HeadCandidate { layer, head, group_size, error })
            .collect()
    }

    fn cost(plan: &ModelAttentionConfig, costs: &dyn Fn(usize, usize, usize) -> f64) -> Result<f64, DistrAttentionError> {
        let mut total = 0.0;
        for layer in 0..2 {
            for (head, config) in plan.kind_for_layer(layer, 2)?.head_configs(3).iter().enumerate() {
                if !config.is_exact() {
                    total += costs(layer, head, config.group_size);
                }
            }
        }
        Ok(total)
    }

    #[test]
    fn plans_take_each_heads_largest_chosen_group_size() {
        let candidates = ranked(&[((0, 0, 2), 0.0), ((0, 0, 4), 0.0), ((0, 1, 2), 0.0), ((0, 2, 2), 0.0), ((1, 1, 4), 0.0)]);
        let (plan, group_sizes) = search().plan_of(&candidates);
        assert_eq!(group_sizes, vec![vec![4, 2, 2], vec![1, 4, 1]]);
        let (plan_equal, _) = search().plan_of(&candidates[2..4]);
        assert_eq!(plan_equal.per_layer[0], AttentionKind::PerHead(vec![DistrAttentionConfig::exact(), DistrAttentionConfig::new(), DistrAttentionConfig::new()]));
        assert_eq!(plan.per_layer[1].head_configs(3)[1].group_size, 4);
        let all_g2: Vec<_> = (0..3).map(|head| HeadCandidate { layer: 1, head, group_size: 2, error: 0.0 }).collect();
        let (plan, _) = search().plan_of(&all_g2);
        assert_eq!(plan.per_layer, vec![AttentionKind::Exact, AttentionKind::Distr(DistrAttentionConfig::new())]);
        plan.check(2, 3, 16).unwrap();
    }

    #[test]
    fn bisection_finds_the_longest_prefix_within_budget() {
        // A head costs G / 2: the budget of 5 admits the first five candidates of twelve.
        let candidates: Vec<_> = search().candidates().enumerate().map(|(rank, (layer, head, group_size))| {
            HeadCandidate { layer, head, group_size, error: rank as f64 }
        }).collect();
        let mut seen = 0;
        let result = search()
            .run(Budget::AtMost(5.0), candidates, |plan| cost(plan, &|_, _, group_size| group_size as f64 / 2.0), |_| seen += 1)
            .unwrap();
        // Rank order is (0,0,2), (0,0,4), (0,1,2), ...: a head's G=4 replaces its G=2.
        assert_eq!(result.chosen.iter().filter(|&&chosen| chosen).count(), 5);
        assert_eq!(result.group_sizes, vec![vec![4, 4, 2], vec![1, 1, 1]]);
        assert_eq!(result.score, Some(5.0));
        assert_eq!(seen, result.trials.len());
        assert!(result.trials.len() <= search().max_trials());
    }

    #[test]
    fn later_rounds_skip_the_candidate_that_ended_the_last() {
        // Ranked first to last: (0,0,2) cheap, (0,1,2) too costly alone, then cheap ones.
        let candidates = ranked(&[((0, 0, 2), 0.0), ((0, 1, 2), 1.0), ((0, 1, 4), 1.5), ((0, 2, 2), 2.0), ((1, 0, 2), 3.0)]);
        let costs = |_: usize, head: usize, _: usize| if head == 1 { 10.0 } else { 1.0 };
        let once = search().run(Budget::AtMost(3.0), candidates.clone(), |plan| cost(plan, &costs), |_| {}).unwrap();
        assert_eq!(once.group_sizes, vec![vec![2, 1, 1], vec![1, 1, 1]]);
        let twice = HeadSearch { rounds: 2, ..search() };
        let result = twice.run(Budget::AtMost(3.0), candidates, |plan| cost(plan, &costs), |_| {}).unwrap();
        // Round 2 drops head 1 at G=2 and G=4, then fits the other three.
        assert_eq!(result.group_sizes, vec![vec![2, 1, 2], vec![2, 1, 1]]);
        assert_eq!(result.score, Some(3.0));
        assert!(result.trials.iter().any(|trial| trial.round == Some(1) && trial.accepted));
    }

    #[test]
    fn ranking_alone_scores_each_candidate_and_leaves_out_what_fails_alone() {
        let search = HeadSearch { ranking: HeadRanking::Alone, ..search() };
        // Higher is better here: a head's score alone is 1 - cost, and head (1, 2) fails alone.
        let costs = |layer: usize, head: usize, group_size: usize| if (layer, head) == (1, 2) { 0.5 } else { 0.005 * (layer * 3 + head) as f64 * group_size as f64 };
        let mut seen = Vec::new();
        let ranking = search
            .rank_alone(Budget::AtLeast(0.9), |plan| cost(plan, &costs).map(|cost| 1.0 - cost), |trial| seen.push(trial.clone()))
            .unwrap();
        assert_eq!(seen.len(), 12);
        assert!(seen.iter().all(|trial| trial.round.is_none() && trial.alone.is_some()));
        assert_eq!(ranking.len(), 10, "head (1, 2) fails alone at both group sizes");
        let first = &ranking[0];
        assert_eq!((first.layer, first.head, first.group_size, first.error), (0, 0, 2, -1.0));
        let result = search.run(Budget::AtLeast(0.9), ranking, |plan| cost(plan, &costs).map(|cost| 1.0 - cost), |_| {}).unwrap();
        assert!(result.score.unwrap() >= 0.9);
        assert_eq!(result.group_sizes[1][2], 1);
        assert!(search.max_trials() >= 12 + 4);
    }

    #[test]
    fn bad_candidates_and_parameters_fail_before_any_evaluation() {
        let never = |_: &ModelAttentionConfig| -> Result<f64, DistrAttentionError> { panic!("evaluated") };
        let outside = ranked(&[((2, 0, 2), 0.0)]);
        let error = search().run(Budget::AtMost(1.0), outside, never, |_| {}).unwrap_err();
        assert!(error.to_string().contains("layer 2 head 0 G=2"), "{error}");
        for bad in [HeadSearch { rounds: 0, ..search() }, HeadSearch { group_sizes: vec![3], ..search() }] {
            assert!(bad.run(Budget::AtMost(1.0), Vec::new(), never, |_| {}).is_err());
        }
    }

    #[test]
    fn head_errors_are_zero_for_exact_and_weighted_by_the_projection() {
        let device = Default::default();
        let normal = Distribution::Normal(0.0, 1.0);
        let query = Tensor::<TestBackend, 4>::random([2, 3, 40, 8], normal, &device);
        let key = Tensor::<TestBackend, 4>::random([2, 3, 40, 8], normal, &device);
        let value = Tensor::<TestBackend, 4>::random([2, 3, 40, 8], normal, &device);
        let weight = Tensor::<TestBackend, 2>::random([24, 5], normal, &device);
        let g2 = DistrAttentionConfig::new().with_block_rows(16);
        let exact = head_errors(query.clone(), key.clone(), value.clone(), weight.clone(), &DistrAttentionConfig::exact()).unwrap();
        assert_eq!(exact, vec![0.0; 3]);
        let errors = head_errors(query.clone(), key.clone(), value.clone(), weight.clone(), &g2).unwrap();
        assert!(errors.iter().all(|&error| error > 0.0), "{errors:?}");
        // Doubling head 1's rows of the projection quadruples its error alone.
        let scale = Tensor::<TestBackend, 1>::from_floats([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], &device);
        let doubled = head_errors(query.clone(), key.clone(), value.clone(), weight.clone() * scale.reshape([24, 1]), &g2).unwrap();
        for head in 0..3 {
            let factor = if head == 1 { 4.0 } else { 1.0 };
            assert!((doubled[head] - factor * errors[head]).abs() <= 1e-4 * doubled[head], "head {head}: {doubled:?} {errors:?}");
        }
        let error = head_errors(query, key, value, weight.narrow(0, 0, 16), &g2).unwrap_err();
        assert!(error.to_string().contains("output_weight"), "{error}");
    }
}
