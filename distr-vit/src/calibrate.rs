//! Per-layer calibration: which layers can run DistrAttention, and with which group size,
//! while the saliency map stays within an error budget of exact attention's.
//!
//! Greedy, in two passes over the layers:
//!
//! 1. Sensitivity: each layer alone runs DistrAttention with the smallest group size tried
//!    (the others exact); its score is the worst saliency correlation with exact attention
//!    over the calibration images.
//! 2. Assignment: layers are visited from the least sensitive to the most (ties: lower
//!    index first), so that the budget is spent first where it buys the most layers. Each
//!    layer gets the largest group size whose model, together with every layer already
//!    assigned, keeps the worst correlation at or above the budget; otherwise it stays exact.
//!    A layer that fails the budget on its own in pass 1 is not tried again: with more
//!    approximate layers around it, it would only fail by more.
//!
//! Cost: `layers + layers * group_sizes` forward passes per image at most.

use burn::config::Config;
use burn::tensor::Tensor;
use distr_attn::{AttentionKind, DistrAttentionBackend, DistrAttentionConfig, ModelAttentionConfig};
use serde::Serialize;

use crate::error::to_f32;
use crate::metrics::pearson;
use crate::model::SaliencyModel;
use crate::VitError;

/// Configuration of [`calibrate`].
#[derive(Config, Debug)]
pub struct CalibrationConfig {
    /// Smallest acceptable Pearson correlation of the saliency map with exact attention's, on
    /// every calibration image. Default: 0.99.
    #[config(default = 0.99)]
    pub min_correlation: f64,
    /// Group sizes to try, largest first; each must divide the head dimension.
    /// Default: `[8, 4, 2]`.
    #[config(default = "vec![8, 4, 2]")]
    pub group_sizes: Vec<usize>,
    /// DistrAttention parameters besides the group size (block rows, projections, seed,
    /// representative, grouping). Default: the op's defaults.
    #[config(default = "DistrAttentionConfig::new()")]
    pub distr: DistrAttentionConfig,
}

/// What calibration chose for one layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerChoice {
    /// Layer index.
    pub layer: usize,
    /// Worst correlation with only this layer approximate (smallest group size).
    pub alone_correlation: f64,
    /// Chosen group size; `None` keeps the layer exact.
    pub group_size: Option<usize>,
}

/// The outcome of [`calibrate`].
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationReport {
    /// Per-layer attention, ready to save as the `--config` file of the CLI.
    pub plan: ModelAttentionConfig,
    /// One entry per layer, in layer order.
    pub layers: Vec<LayerChoice>,
    /// The order in which layers were assigned (least sensitive first).
    pub order: Vec<usize>,
    /// Worst correlation of the chosen plan over the calibration images.
    pub correlation: f64,
    /// Attention forward FLOPs of one image with exact attention in every layer.
    pub exact_attention_flops: f64,
    /// The same with the chosen plan (hashing included).
    pub plan_attention_flops: f64,
    /// `1 - plan / exact`.
    pub attention_flops_saved: f64,
    /// Forward passes spent.
    pub forward_passes: usize,
}

/// Chooses per-layer attention for `model` on `inputs` (`[1, 3, height, width]` each, of one
/// size) within `config.min_correlation`. `on_trial` sees a short description of each trial
/// and its correlation. The model's attention is left as the returned plan says.
pub fn calibrate<B: DistrAttentionBackend>(
    model: &mut SaliencyModel<B>,
    inputs: &[Tensor<B, 4>],
    config: &CalibrationConfig,
    mut on_trial: impl FnMut(&str, f64),
) -> Result<CalibrationReport, VitError> {
    let Some(first) = inputs.first() else {
        return Err(VitError::Config {
            name: "calibration images",
            value: "0".into(),
            expected: "at least one image".into(),
        });
    };
    let mut group_sizes = config.group_sizes.clone();
    group_sizes.sort_unstable_by(|a, b| b.cmp(a));
    group_sizes.dedup();
    let Some(&smallest) = group_sizes.last().filter(|&&g| g >= 2) else {
        return Err(VitError::Config {
            name: "group_sizes",
            value: format!("{:?}", config.group_sizes),
            expected: "at least one group size, each at least 2".into(),
        });
    };
    if !(-1.0..=1.0).contains(&config.min_correlation) {
        return Err(VitError::Config {
            name: "min_correlation",
            value: config.min_correlation.to_string(),
            expected: "a Pearson correlation, in [-1, 1]".into(),
        });
    }
    let num_layers = model.backbone.blocks.len();
    let kind = |group_size: usize| AttentionKind::Distr(config.distr.clone().with_group_size(group_size));
    for &group_size in &group_sizes {
        model.backbone.check_attention(&ModelAttentionConfig::new().with_default(kind(group_size)))?;
    }

    model.backbone.set_attention(&ModelAttentionConfig::exact())?;
    let exact = inputs
        .iter()
        .map(|input| to_f32(model.forward(input.clone())?.saliency))
        .collect::<Result<Vec<_>, _>>()?;
    let mut forward_passes = inputs.len();
    let mut worst = |model: &mut SaliencyModel<B>, per_layer: &[AttentionKind]| -> Result<f64, VitError> {
        model
            .backbone
            .set_attention(&ModelAttentionConfig::exact().with_per_layer(per_layer.to_vec()))?;
        let mut worst = f64::INFINITY;
        for (input, exact) in inputs.iter().zip(&exact) {
            worst = worst.min(pearson(&to_f32(model.forward(input.clone())?.saliency)?, exact));
        }
        forward_passes += inputs.len();
        Ok(worst)
    };

    let mut layers = Vec::with_capacity(num_layers);
    for layer in 0..num_layers {
        let mut per_layer = vec![AttentionKind::Exact; num_layers];
        per_layer[layer] = kind(smallest);
        let correlation = worst(model, &per_layer)?;
        on_trial(&format!("layer {layer} alone, G={smallest}"), correlation);
        layers.push(LayerChoice {
            layer,
            alone_correlation: correlation,
            group_size: None,
        });
    }
    let mut order: Vec<usize> = (0..num_layers).collect();
    order.sort_by(|&a, &b| layers[b].alone_correlation.total_cmp(&layers[a].alone_correlation).then(a.cmp(&b)));

    let mut chosen = vec![AttentionKind::Exact; num_layers];
    let mut correlation = 1.0;
    for &layer in &order {
        if layers[layer].alone_correlation < config.min_correlation {
            continue;
        }
        for &group_size in &group_sizes {
            let mut candidate = chosen.clone();
            candidate[layer] = kind(group_size);
            let trial = worst(model, &candidate)?;
            on_trial(&format!("layer {layer}, G={group_size}"), trial);
            if trial >= config.min_correlation {
                chosen = candidate;
                layers[layer].group_size = Some(group_size);
                correlation = trial;
                break;
            }
        }
    }

    let plan = ModelAttentionConfig::exact().with_per_layer(chosen);
    model.backbone.set_attention(&plan)?;
    let [_, _, height, width] = first.dims();
    let patch = model.backbone.patch_size;
    let tokens = 1 + (height / patch) * (width / patch);
    let attention = &model.backbone.blocks[0].attention;
    let cost = AttentionCost {
        heads: attention.n_heads,
        head_dim: attention.d_k,
        tokens,
    };
    let exact_attention_flops = cost.exact() * num_layers as f64;
    let mut plan_attention_flops = 0.0;
    for layer in 0..num_layers {
        plan_attention_flops += cost.of(&plan.kind_for_layer(layer, num_layers)?.op_config());
    }
    Ok(CalibrationReport {
        plan,
        layers,
        order,
        correlation,
        exact_attention_flops,
        plan_attention_flops,
        attention_flops_saved: 1.0 - plan_attention_flops / exact_attention_flops,
        forward_passes,
    })
}

/// Attention forward FLOPs of one layer for one image (`../shared/DISTR_ATTENTION.md`, "Cost").
struct AttentionCost {
    heads: usize,
    head_dim: usize,
    tokens: usize,
}

impl AttentionCost {
    /// `4 N² d` per head: `Q K^T` and `P V`.
    fn exact(&self) -> f64 {
        let [n, d] = [self.tokens as f64, self.head_dim as f64];
        self.heads as f64 * 4.0 * n * n * d
    }

    /// `2 N² d / G + 2 N² d` plus the hashing `2 N d P` per head; exact when `G = 1`.
    fn of(&self, config: &DistrAttentionConfig) -> f64 {
        if config.is_exact() {
            return self.exact();
        }
        let [n, d] = [self.tokens as f64, self.head_dim as f64];
        let group_size = config.group_size as f64;
        let hashing = 2.0 * n * d * config.num_projections as f64;
        self.heads as f64 * (2.0 * n * n * d / group_size + 2.0 * n * n * d + hashing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::saliency::tiny_saliency_config;
    use burn::backend::NdArray;
    use burn::tensor::backend::Backend;
    use burn::tensor::Distribution;

    type B = NdArray<f32>;

    #[test]
    fn the_plan_loads_and_keeps_its_budget_on_the_calibration_images() {
        let device = Default::default();
        B::seed(&device, 3);
        let mut model = tiny_saliency_config().init::<B>(&device).unwrap();
        let inputs: Vec<Tensor<B, 4>> = (0..2)
            .map(|_| Tensor::random([1, 3, 28, 28], Distribution::Normal(0.0, 1.0), &device))
            .collect();
        let budget = 0.995;
        let config = CalibrationConfig::new().with_min_correlation(budget);
        let report = calibrate(&mut model, &inputs, &config, |_, _| {}).unwrap();
        assert!(report.layers.iter().any(|layer| layer.group_size.is_some()), "{report:#?}");
        // At 17 tokens the hashing costs more than grouping saves, so the saving may be
        // negative here; it is bounded by the G -> infinity limit of one half.
        assert!(report.plan_attention_flops != report.exact_attention_flops);
        assert!(report.attention_flops_saved < 0.5);

        let path = std::env::temp_dir().join(format!("distr-vit-calibration-{}.json", std::process::id()));
        report.plan.save(&path).unwrap();
        let plan = ModelAttentionConfig::load(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(plan, report.plan);

        model.backbone.set_attention(&ModelAttentionConfig::exact()).unwrap();
        let exact: Vec<Vec<f32>> = inputs
            .iter()
            .map(|input| to_f32(model.forward(input.clone()).unwrap().saliency).unwrap())
            .collect();
        model.backbone.set_attention(&plan).unwrap();
        for (input, exact) in inputs.iter().zip(&exact) {
            let approx = to_f32(model.forward(input.clone()).unwrap().saliency).unwrap();
            let correlation = pearson(&approx, exact);
            assert!(correlation >= budget, "{correlation} below the budget {budget}");
        }
    }

    #[test]
    fn an_unreachable_budget_keeps_every_layer_exact() {
        let device = Default::default();
        let mut model = tiny_saliency_config().init::<B>(&device).unwrap();
        let input = Tensor::random([1, 3, 28, 28], Distribution::Normal(0.0, 1.0), &device);
        // Only exact attention reaches a correlation of exactly 1.
        let config = CalibrationConfig::new().with_min_correlation(1.0);
        let report = calibrate(&mut model, &[input.clone()], &config, |_, _| {}).unwrap();
        assert!(report.layers.iter().all(|layer| layer.group_size.is_none()));
        assert_eq!(report.attention_flops_saved, 0.0);
        assert!(calibrate(&mut model, &[], &config, |_, _| {}).is_err());
        // Budgets outside a correlation's range, and group sizes the heads cannot take.
        let out_of_range = CalibrationConfig::new().with_min_correlation(1.5);
        assert!(calibrate(&mut model, &[input.clone()], &out_of_range, |_, _| {}).is_err());
        let indivisible = CalibrationConfig::new().with_group_sizes(vec![3]);
        assert!(calibrate(&mut model, &[input], &indivisible, |_, _| {}).is_err());
    }
}
