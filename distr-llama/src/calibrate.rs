//! Per-layer calibration: which layers can run DistrAttention, and with which group size,
//! while the model's perplexity on calibration text stays within a budget.
//!
//! Greedy, one layer at a time from the **last layer to the first**: the early layers are the
//! most sensitive to approximate attention (keeping the first layers exact recovers most of
//! the loss, `../RESULTS.md`), so the budget is spent first where it buys the most layers.
//! For each layer the group sizes are tried largest first; the first that keeps the whole
//! model (every choice made so far in place) within budget is kept, else the layer stays
//! exact. Every accepted choice was measured with all earlier choices in place, so the final
//! plan's calibration perplexity is the last accepted measurement: within budget by
//! construction. Cost: at most `num_layers * group_sizes` perplexity evaluations.

use burn::config::Config;
use distr_attn::{AttentionKind, DistrAttentionBackend, DistrAttentionConfig, ModelAttentionConfig};
use serde::Serialize;

use crate::error::{self, LlamaError};
use crate::evaluation::perplexity;
use crate::model::{Llama, LlamaConfig};

/// The search's budget and candidates.
#[derive(Config, Debug)]
pub struct CalibrationConfig {
    /// Largest allowed relative perplexity increase over exact attention (0.01 = 1%).
    /// Default: 0.01.
    #[config(default = 0.01)]
    pub max_perplexity_increase: f64,
    /// Group sizes to try, largest first. Default: 8, 4, 2.
    #[config(default = "vec![8, 4, 2]")]
    pub group_sizes: Vec<usize>,
    /// Tokens per forward pass over the calibration text. Default: 512.
    #[config(default = 512)]
    pub context: usize,
}

/// One evaluated choice.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub layer: usize,
    pub group_size: usize,
    pub perplexity: f64,
    pub accepted: bool,
}

/// Score-product FLOPs (`Q K^T` and `P V`) of one prefill of `seq` tokens, summed over the
/// layers. DistrAttention with group size G computes `Q K^T` over `head_dim / G` fused columns,
/// saving `(1 - 1/G)` of that half; `P V` is unchanged. Decode steps are not counted.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AttentionFlops {
    pub seq: usize,
    pub exact: f64,
    pub planned: f64,
    /// `1 - planned / exact`.
    pub saved_fraction: f64,
}

impl AttentionFlops {
    pub fn of(config: &LlamaConfig, plan: &ModelAttentionConfig, seq: usize) -> error::Result<Self> {
        let half = 2.0 * (seq * seq * config.head_dim * config.num_heads) as f64;
        let mut planned = 0.0;
        for layer in 0..config.num_layers {
            let group_size = plan.kind_for_layer(layer, config.num_layers)?.op_config().group_size;
            planned += half / group_size as f64 + half;
        }
        let exact = 2.0 * half * config.num_layers as f64;
        Ok(Self { seq, exact, planned, saved_fraction: 1.0 - planned / exact })
    }
}

/// What calibration chose, and the measurements behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// One entry per layer; write it with `plan.save(path)` for `--config`.
    pub plan: ModelAttentionConfig,
    pub exact_perplexity: f64,
    /// Perplexity of `plan` on the calibration text.
    pub perplexity: f64,
    /// `exact_perplexity * (1 + max_perplexity_increase)`.
    pub budget: f64,
    pub trials: Vec<Trial>,
}

/// Calibrates `model` on the calibration tokens `ids`. `base` gives the DistrAttention
/// parameters other than the group size (block rows, representative, projections, seed).
/// `on_trial` sees every evaluation.
pub fn calibrate<B: DistrAttentionBackend>(
    model: &Llama<B>,
    ids: &[u32],
    base: &DistrAttentionConfig,
    config: &CalibrationConfig,
    device: &B::Device,
    mut on_trial: impl FnMut(&Trial),
) -> error::Result<Calibration> {
    if !(config.max_perplexity_increase >= 0.0) {
        return Err(LlamaError::Config(format!(
            "max perplexity increase {} must be at least 0",
            config.max_perplexity_increase
        )));
    }
    let head_dim = model.layers.first().map(|layer| layer.attention.head_dim).unwrap_or(0);
    let mut group_sizes = config.group_sizes.clone();
    group_sizes.sort_unstable_by(|a, b| b.cmp(a));
    group_sizes.dedup();
    if let Some(bad) = group_sizes.iter().find(|&&g| g < 2 || head_dim % g != 0) {
        return Err(LlamaError::Config(format!(
            "group size {bad} must be at least 2 and divide head_dim {head_dim}"
        )));
    }
    let context = config.context.min(ids.len());
    let stride = (context / 2).max(1);
    let evaluate = |plan: &ModelAttentionConfig| perplexity(model, ids, context, stride, plan, device);

    let num_layers = model.layers.len();
    let mut kinds = vec![AttentionKind::Exact; num_layers];
    let exact_perplexity = evaluate(&ModelAttentionConfig::exact().with_per_layer(kinds.clone()))?.perplexity;
    let budget = exact_perplexity * (1.0 + config.max_perplexity_increase);
    let mut current = exact_perplexity;
    let mut trials = Vec::new();
    for layer in (0..num_layers).rev() {
        for &group_size in &group_sizes {
            let mut candidate = kinds.clone();
            candidate[layer] = AttentionKind::Distr(base.clone().with_group_size(group_size));
            let plan = ModelAttentionConfig::exact().with_per_layer(candidate.clone());
            let measured = evaluate(&plan)?.perplexity;
            let accepted = measured <= budget;
            let trial = Trial { layer, group_size, perplexity: measured, accepted };
            on_trial(&trial);
            trials.push(trial);
            if accepted {
                kinds = candidate;
                current = measured;
                break;
            }
        }
    }
    Ok(Calibration {
        plan: ModelAttentionConfig::exact().with_per_layer(kinds),
        exact_perplexity,
        perplexity: current,
        budget,
        trials,
    })
}
