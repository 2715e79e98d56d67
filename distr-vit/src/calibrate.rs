//! Per-layer calibration of the saliency model: the shared greedy search
//! ([`distr_attn::experiment::calibration`]) scored by the saliency map's worst Pearson
//! correlation with exact attention's over the calibration images.
//!
//! The order used here is least sensitive first: each layer alone runs DistrAttention with
//! the smallest group size, then layers are assigned from the one that keeps the highest
//! correlation alone. Cost: `layers + layers * group_sizes` forward passes per image at
//! most, plus one exact pass per image for the reference maps.

use burn::tensor::Tensor;
use distr_attn::experiment::calibration::{AttentionFlops, Budget, LayerSearch, SearchResult, Trial};
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use serde::Serialize;

use crate::error::to_f32;
use crate::metrics::pearson;
use crate::model::SaliencyModel;
use crate::VitError;

/// The outcome of [`calibrate`].
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationReport {
    /// The plan (`search.plan`, ready to save as the CLI's `--config` file), the layer order,
    /// each layer's correlation alone and every trial.
    pub search: SearchResult,
    /// Worst correlation of the chosen plan over the calibration images (1 when every layer
    /// stayed exact).
    pub correlation: f64,
    /// Attention FLOPs of one image, exact against the plan (hashing included).
    pub flops: AttentionFlops,
    /// Forward passes spent.
    pub forward_passes: usize,
}

/// Chooses per-layer attention for `model` on `inputs` (`[1, 3, height, width]` each, of one
/// size) with `search`, keeping the saliency correlation with exact attention at or above
/// `min_correlation` on every image. `on_trial` sees every trial. The model's attention is
/// left as the returned plan says.
pub fn calibrate<B: DistrAttentionBackend>(
    model: &mut SaliencyModel<B>,
    inputs: &[Tensor<B, 4>],
    search: &LayerSearch,
    min_correlation: f64,
    on_trial: impl FnMut(&Trial),
) -> Result<CalibrationReport, VitError> {
    let Some(first) = inputs.first() else {
        return Err(VitError::Config {
            name: "calibration images",
            value: "0".into(),
            expected: "at least one image".into(),
        });
    };
    if !(-1.0..=1.0).contains(&min_correlation) {
        return Err(VitError::Config {
            name: "min_correlation",
            value: min_correlation.to_string(),
            expected: "a Pearson correlation, in [-1, 1]".into(),
        });
    }
    search.validate()?;
    model.backbone.set_attention(&ModelAttentionConfig::exact())?;
    let exact = inputs
        .iter()
        .map(|input| to_f32(model.forward(input.clone())?.saliency))
        .collect::<Result<Vec<_>, _>>()?;
    let mut forward_passes = inputs.len();
    let worst = |plan: &ModelAttentionConfig| -> Result<f64, VitError> {
        model.backbone.set_attention(plan)?;
        let mut worst = f64::INFINITY;
        for (input, exact) in inputs.iter().zip(&exact) {
            worst = worst.min(pearson(&to_f32(model.forward(input.clone())?.saliency)?, exact));
        }
        forward_passes += inputs.len();
        Ok(worst)
    };
    let result = search.run(Budget::AtLeast(min_correlation), worst, on_trial)?;
    model.backbone.set_attention(&result.plan)?;

    let [_, _, height, width] = first.dims();
    let patch = model.backbone.patch_size;
    let tokens = 1 + (height / patch) * (width / patch);
    let heads = model.backbone.blocks[0].attention.n_heads;
    let flops = AttentionFlops::of(&result.plan, search.num_layers, heads, search.head_dim, tokens)?;
    Ok(CalibrationReport { correlation: result.score.unwrap_or(1.0), search: result, flops, forward_passes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::saliency::tiny_saliency_config;
    use burn::backend::NdArray;
    use burn::config::Config;
    use burn::tensor::backend::Backend;
    use burn::tensor::Distribution;
    use distr_attn::experiment::calibration::LayerOrder;
    use distr_attn::DistrAttentionConfig;

    type B = NdArray<f32>;

    /// The tiny model's search: 3 layers, head dimension 16.
    fn search(group_sizes: Vec<usize>) -> LayerSearch {
        LayerSearch {
            num_layers: 3,
            head_dim: 16,
            group_sizes,
            distr: DistrAttentionConfig::new(),
            order: LayerOrder::LeastSensitiveFirst,
        }
    }

    #[test]
    fn the_plan_loads_and_keeps_its_budget_on_the_calibration_images() {
        let device = Default::default();
        B::seed(&device, 3);
        let mut model = tiny_saliency_config().init::<B>(&device).unwrap();
        let inputs: Vec<Tensor<B, 4>> = (0..2)
            .map(|_| Tensor::random([1, 3, 28, 28], Distribution::Normal(0.0, 1.0), &device))
            .collect();
        let budget = 0.995;
        let report = calibrate(&mut model, &inputs, &search(vec![8, 4, 2]), budget, |_| {}).unwrap();
        assert!(report.search.group_sizes.iter().any(|&group_size| group_size > 1), "{report:#?}");
        assert!(report.search.sensitivity.iter().all(Option::is_some));
        // At 17 tokens the hashing costs more than grouping saves, so the saving may be
        // negative here; it is bounded by the G -> infinity limit of one half.
        assert!(report.flops.planned != report.flops.exact);
        assert!(report.flops.saved_fraction < 0.5);

        let path = std::env::temp_dir().join(format!("distr-vit-calibration-{}.json", std::process::id()));
        report.search.plan.save(&path).unwrap();
        let plan = ModelAttentionConfig::load(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(plan, report.search.plan);

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
        let all = search(vec![8, 4, 2]);
        let report = calibrate(&mut model, &[input.clone()], &all, 1.0, |_| {}).unwrap();
        assert!(report.search.group_sizes.iter().all(|&group_size| group_size == 1));
        assert_eq!(report.flops.saved_fraction, 0.0);
        assert_eq!(report.correlation, 1.0);
        assert!(calibrate(&mut model, &[], &all, 1.0, |_| {}).is_err());
        // Budgets outside a correlation's range, and group sizes the heads cannot take.
        assert!(calibrate(&mut model, &[input.clone()], &all, 1.5, |_| {}).is_err());
        assert!(calibrate(&mut model, &[input], &search(vec![3]), 0.9, |_| {}).is_err());
    }
}
