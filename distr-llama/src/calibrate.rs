//! Per-layer calibration of a Llama: the shared greedy search
//! ([`distr_attn::experiment::calibration`]) scored by perplexity on calibration text, within
//! a relative increase over exact attention's.
//!
//! The order used here visits the **last layer first**: the early layers are the most sensitive
//! to approximate attention (keeping the first layers exact recovers most of the loss,
//! `../RESULTS.md`), so the budget is spent first where it buys the most layers, at no extra
//! evaluation. Cost: at most `num_layers * group_sizes` perplexity evaluations (plus one per
//! layer for `LeastSensitiveFirst`), and one exact evaluation for the budget.

use distr_attn::experiment::calibration::{Budget, LayerSearch, SearchResult, Trial};
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use serde::Serialize;

use crate::error::{LlamaError, Result};
use crate::evaluation::perplexity;
use crate::model::Llama;

/// The budget and how calibration text is scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerplexityBudget {
    /// Largest allowed relative perplexity increase over exact attention (0.01 = 1%).
    pub max_increase: f64,
    /// Tokens per forward pass over the calibration text (windows advance by half of it).
    pub context: usize,
}

/// What calibration chose, and the measurements behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub exact_perplexity: f64,
    /// Perplexity of the chosen plan on the calibration text.
    pub perplexity: f64,
    /// `exact_perplexity * (1 + max_perplexity_increase)`.
    pub budget: f64,
    /// The plan (`search.plan`, one entry per layer) and every trial.
    pub search: SearchResult,
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
) -> Result<Calibration> {
    let increase = budget.max_increase;
    if !(increase >= 0.0 && increase.is_finite()) {
        return Err(LlamaError::Config(format!("max perplexity increase {increase} must be a finite number, at least 0")));
    }
    let context = budget.context.min(ids.len());
    let stride = (context / 2).max(1);
    search.validate()?;
    model.set_attention(&ModelAttentionConfig::exact())?;
    let exact_perplexity = perplexity(model, ids, context, stride, device)?.perplexity;
    let bound = exact_perplexity * (1.0 + increase);
    let result = search.run(
        Budget::AtMost(bound),
        |plan| -> Result<f64> {
            model.set_attention(plan)?;
            Ok(perplexity(model, ids, context, stride, device)?.perplexity)
        },
        on_trial,
    )?;
    model.set_attention(&result.plan)?;
    Ok(Calibration { exact_perplexity, perplexity: result.score.unwrap_or(exact_perplexity), budget: bound, search: result })
}
