//! Calibration of a Llama: the shared searches ([`distr_attn::experiment::calibration`])
//! scored by perplexity on calibration text, within a relative increase over exact attention's.
//! Per layer ([`calibrate`]) or per query head ([`calibrate_heads`]).
//!
//! The order used here visits the **last layer first**: the early layers are the most sensitive
//! to approximate attention (keeping the first layers exact recovers most of the loss,
//! `../RESULTS.md`), so the budget is spent first where it buys the most layers, at no extra
//! evaluation. Cost: at most `num_layers * group_sizes` perplexity evaluations (plus one per
//! layer for `LeastSensitiveFirst`), and one exact evaluation for the budget.

use distr_attn::experiment::calibration::{
    Budget, HeadCandidate, HeadErrorSums, HeadRanking, HeadSearch, HeadSearchResult, HeadTrial, LayerSearch, SearchResult, Trial,
};
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use serde::Serialize;

use crate::error::{LlamaError, Result};
use crate::evaluation::{perplexity, windows};
use crate::model::Llama;

/// The budget and how calibration text is scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerplexityBudget {
    /// Largest allowed relative perplexity increase over exact attention (0.01 = 1%).
    pub max_increase: f64,
    /// Tokens per forward pass over the calibration text (windows advance by half of it).
    pub context: usize,
}

/// What calibration chose, and the measurements behind it; `S` is the search's outcome (per
/// layer [`SearchResult`], per head [`HeadSearchResult`]: the plan and every trial).
#[derive(Debug, Clone, Serialize)]
pub struct Calibration<S> {
    pub exact_perplexity: f64,
    /// Perplexity of the chosen plan on the calibration text.
    pub perplexity: f64,
    /// `exact_perplexity * (1 + max_perplexity_increase)`.
    pub budget: f64,
    pub search: S,
}

impl<S> Calibration<S> {
    /// The same measurements with `search` replaced by what `keep` takes of it.
    pub fn map<T>(self, keep: impl FnOnce(S) -> T) -> Calibration<T> {
        Calibration { exact_perplexity: self.exact_perplexity, perplexity: self.perplexity, budget: self.budget, search: keep(self.search) }
    }
}

/// Calibrates `model` on the calibration tokens `ids` with `search` (the layer order is
/// usually `LayerOrder::LastFirst`, see the module); `on_trial` sees every evaluation. The
/// model's attention is left as the chosen plan.
pub fn calibrate<B: DistrAttentionBackend>(
    model: &mut Llama<B>,
    ids: &[u32],
    search: &LayerSearch,
    budget: PerplexityBudget,
    device: &B::Device,
    on_trial: impl FnMut(&Trial),
) -> Result<Calibration<SearchResult>> {
    search.validate()?;
    let exact = ExactScore::measure(model, ids, budget, device)?;
    let result = search.run(Budget::AtMost(exact.bound), |plan| exact.score(model, ids, plan, device), on_trial)?;
    model.set_attention(&result.plan)?;
    Ok(exact.calibration(result.score, result))
}

/// Calibrates `model` per query head ([`HeadSearch`]): every candidate head and group size is
/// ranked (by [`rank_heads`] on the calibration windows, or by its perplexity alone), then the
/// longest prefix of the ranking within the budget is found by bisection. `on_trial` sees every evaluation. The model's
/// attention is left as the chosen plan.
pub fn calibrate_heads<B: DistrAttentionBackend>(
    model: &mut Llama<B>,
    ids: &[u32],
    search: &HeadSearch,
    budget: PerplexityBudget,
    device: &B::Device,
    on_trial: impl FnMut(&HeadTrial),
) -> Result<Calibration<HeadSearchResult>> {
    search.validate()?;
    let exact = ExactScore::measure(model, ids, budget, device)?;
    let budget = Budget::AtMost(exact.bound);
    let mut on_trial = on_trial;
    let ranking = match search.ranking {
        HeadRanking::Local => rank_heads(model, ids, exact.context, exact.stride, search, device)?,
        HeadRanking::Alone => search.rank_alone(budget, |plan| exact.score(model, ids, plan, device), &mut on_trial)?,
    };
    let result = search.run(budget, ranking, |plan| exact.score(model, ids, plan, device), on_trial)?;
    model.set_attention(&result.plan)?;
    Ok(exact.calibration(result.score, result))
}

/// Every candidate of `search` with its error on the calibration windows (those perplexity
/// reads, `context` tokens advancing by `stride`): for each layer, head and group size, what
/// the head's approximate output adds to the residual stream through the output projection
/// with the rest of the model exact, summed over the windows, relative to the squared norm of
/// the residual stream it is added to ([`HeadErrorSums`]).
pub fn rank_heads<B: DistrAttentionBackend>(
    model: &Llama<B>,
    ids: &[u32],
    context: usize,
    stride: usize,
    search: &HeadSearch,
    device: &B::Device,
) -> Result<Vec<HeadCandidate>> {
    let mut sums = HeadErrorSums::new(search);
    for (begin, end, _) in windows(ids.len(), context, stride)? {
        let activations = model.attention_activations(model.tokens(&ids[begin..end], device)?)?;
        for (layer, inputs) in activations.into_iter().enumerate() {
            let output_weight = model.layers[layer].attention.output.weight.val();
            sums.add(search, layer, [inputs.query, inputs.key, inputs.value], output_weight, inputs.residual, true)?;
        }
    }
    Ok(sums.ranking(search))
}

/// Exact attention's perplexity on the calibration text, the budget above it, and how every
/// plan is scored against it.
struct ExactScore {
    perplexity: f64,
    bound: f64,
    context: usize,
    stride: usize,
}

impl ExactScore {
    fn measure<B: DistrAttentionBackend>(model: &mut Llama<B>, ids: &[u32], budget: PerplexityBudget, device: &B::Device) -> Result<Self> {
        let increase = budget.max_increase;
        if !(increase >= 0.0 && increase.is_finite()) {
            return Err(LlamaError::Config(format!("max perplexity increase {increase} must be a finite number, at least 0")));
        }
        let context = budget.context.min(ids.len());
        let stride = (context / 2).max(1);
        model.set_attention(&ModelAttentionConfig::exact())?;
        let perplexity = perplexity(model, ids, context, stride, device)?.perplexity;
        Ok(Self { perplexity, bound: perplexity * (1.0 + increase), context, stride })
    }

    /// A search's outcome, whose plan scored `score` (`None`: every layer exact).
    fn calibration<S>(&self, score: Option<f64>, search: S) -> Calibration<S> {
        Calibration { exact_perplexity: self.perplexity, perplexity: score.unwrap_or(self.perplexity), budget: self.bound, search }
    }

    /// The perplexity of `model` with `plan` on the calibration text.
    fn score<B: DistrAttentionBackend>(&self, model: &mut Llama<B>, ids: &[u32], plan: &ModelAttentionConfig, device: &B::Device) -> Result<f64> {
        model.set_attention(plan)?;
        Ok(perplexity(model, ids, self.context, self.stride, device)?.perplexity)
    }
}
