//! Calibration of the saliency model: the shared searches
//! ([`distr_attn::experiment::calibration`]) scored by the saliency map's worst Pearson
//! correlation with exact attention's over the calibration images.
//!
//! Per layer ([`calibrate`]) the order is least sensitive first: each layer alone runs
//! DistrAttention with the smallest group size, then layers are assigned from the one that
//! keeps the highest correlation alone. Cost: `layers + layers * group_sizes` forward passes
//! per image at most, plus one exact pass per image for the reference maps. Per query head
//! ([`calibrate_heads`]) the heads are ranked by [`rank_heads`] and a prefix of the ranking is
//! found by bisection.

use burn::tensor::Tensor;
use distr_attn::experiment::calibration::{
    AttentionFlops, Budget, HeadCandidate, HeadErrorSums, HeadRanking, HeadSearch, HeadSearchResult, HeadTrial, LayerSearch, SearchResult, Trial,
};
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use serde::Serialize;

use crate::error::to_f32;
use crate::metrics::pearson;
use crate::model::SaliencyModel;
use crate::VitError;

/// The outcome of [`calibrate`] and [`calibrate_heads`]; `S` is the search's (per layer
/// [`SearchResult`]: the plan, ready to save as the CLI's `--config` file, the layer order,
/// each layer's correlation alone and every trial; per head [`HeadSearchResult`]: the plan, the
/// ranking and every trial).
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationReport<S> {
    pub search: S,
    /// Worst correlation of the chosen plan over the calibration images (1 when every layer
    /// stayed exact).
    pub correlation: f64,
    /// Attention FLOPs of one image, exact against the plan (grouping included).
    pub flops: AttentionFlops,
    /// Forward passes spent (a local ranking's exact passes included).
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
) -> Result<CalibrationReport<SearchResult>, VitError> {
    search.validate()?;
    let mut exact = ExactMaps::measure(model, inputs, min_correlation)?;
    let result = search.run(Budget::AtLeast(min_correlation), |plan| exact.worst(model, inputs, plan), on_trial)?;
    let (plan, score) = (result.plan.clone(), result.score);
    exact.report(model, inputs, &plan, score, result)
}

/// Chooses per-head attention for `model` on `inputs` ([`HeadSearch`]): the candidates ranked
/// (by [`rank_heads`] on the same images, or by the correlation each keeps alone), then the
/// longest prefix of the ranking that keeps the saliency correlation at or above
/// `min_correlation` on every image. The model's attention is left as the returned plan says.
pub fn calibrate_heads<B: DistrAttentionBackend>(
    model: &mut SaliencyModel<B>,
    inputs: &[Tensor<B, 4>],
    search: &HeadSearch,
    min_correlation: f64,
    on_trial: impl FnMut(&HeadTrial),
) -> Result<CalibrationReport<HeadSearchResult>, VitError> {
    search.validate()?;
    let mut exact = ExactMaps::measure(model, inputs, min_correlation)?;
    let budget = Budget::AtLeast(min_correlation);
    let mut on_trial = on_trial;
    let ranking = match search.ranking {
        HeadRanking::Local => {
            exact.forward_passes += inputs.len();
            rank_heads(model, inputs, search)?
        }
        HeadRanking::Alone => search.rank_alone(budget, |plan| exact.worst(model, inputs, plan), &mut on_trial)?,
    };
    let result = search.run(budget, ranking, |plan| exact.worst(model, inputs, plan), on_trial)?;
    let (plan, score) = (result.plan.clone(), result.score);
    exact.report(model, inputs, &plan, score, result)
}

/// Every candidate of `search` with its error on `inputs`: for each block, head and group size,
/// what the head's approximate output adds to the residual stream through the output projection
/// and layer scale, the blocks before it exact, summed over the images, relative to the squared
/// norm of the residual stream it is added to ([`HeadErrorSums`]). Leaves the model's attention
/// exact.
pub fn rank_heads<B: DistrAttentionBackend>(
    model: &mut SaliencyModel<B>,
    inputs: &[Tensor<B, 4>],
    search: &HeadSearch,
) -> Result<Vec<HeadCandidate>, VitError> {
    model.backbone.set_attention(&ModelAttentionConfig::exact())?;
    let backbone = &model.backbone;
    let mut sums = HeadErrorSums::new(search);
    for input in inputs {
        let (mut x, _) = backbone.embed(input.clone())?;
        for (layer, block) in backbone.blocks.iter().enumerate() {
            let (heads, weight) = block.attention_inputs(x.clone())?;
            sums.add(search, layer, heads, weight, x.clone(), false)?;
            x = block.forward(x)?;
        }
    }
    Ok(sums.ranking(search))
}

/// The exact model's saliency maps of the calibration images, and how a plan is scored
/// against them.
struct ExactMaps {
    maps: Vec<Vec<f32>>,
    forward_passes: usize,
}

impl ExactMaps {
    fn measure<B: DistrAttentionBackend>(model: &mut SaliencyModel<B>, inputs: &[Tensor<B, 4>], min_correlation: f64) -> Result<Self, VitError> {
        if inputs.is_empty() {
            return Err(VitError::Config {
                name: "calibration images",
                value: "0".into(),
                expected: "at least one image".into(),
            });
        }
        if !(-1.0..=1.0).contains(&min_correlation) {
            return Err(VitError::Config {
                name: "min_correlation",
                value: min_correlation.to_string(),
                expected: "a Pearson correlation, in [-1, 1]".into(),
            });
        }
        model.backbone.set_attention(&ModelAttentionConfig::exact())?;
        let maps = inputs
            .iter()
            .map(|input| to_f32(model.forward(input.clone())?.saliency))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { maps, forward_passes: inputs.len() })
    }

    /// The worst correlation with the exact maps over `inputs` of `model` with `plan`.
    fn worst<B: DistrAttentionBackend>(&mut self, model: &mut SaliencyModel<B>, inputs: &[Tensor<B, 4>], plan: &ModelAttentionConfig) -> Result<f64, VitError> {
        model.backbone.set_attention(plan)?;
        let mut worst = f64::INFINITY;
        for (input, exact) in inputs.iter().zip(&self.maps) {
            worst = worst.min(pearson(&to_f32(model.forward(input.clone())?.saliency)?, exact));
        }
        self.forward_passes += inputs.len();
        Ok(worst)
    }

    /// Leaves `model` with the chosen `plan` and reports it: its worst correlation `score`
    /// (`None`: every head exact), the attention FLOPs of one of `inputs`, the passes spent.
    fn report<B: DistrAttentionBackend, S>(
        &self,
        model: &mut SaliencyModel<B>,
        inputs: &[Tensor<B, 4>],
        plan: &ModelAttentionConfig,
        score: Option<f64>,
        search: S,
    ) -> Result<CalibrationReport<S>, VitError> {
        let backbone = &mut model.backbone;
        backbone.set_attention(plan)?;
        let [_, _, height, width] = inputs[0].dims();
        let tokens = 1 + (height / backbone.patch_size) * (width / backbone.patch_size);
        let flops = AttentionFlops::of(plan, backbone.blocks.len(), backbone.num_heads(), backbone.head_dim(), tokens)?;
        Ok(CalibrationReport { search, correlation: score.unwrap_or(1.0), flops, forward_passes: self.forward_passes })
    }
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
            num_heads: 2,
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
    fn per_head_calibration_keeps_its_budget_on_the_calibration_images() {
        let device = Default::default();
        B::seed(&device, 3);
        let mut model = tiny_saliency_config().init::<B>(&device).unwrap();
        let inputs: Vec<Tensor<B, 4>> = (0..2)
            .map(|_| Tensor::random([1, 3, 28, 28], Distribution::Normal(0.0, 1.0), &device))
            .collect();
        let search = HeadSearch {
            num_layers: 3,
            num_heads: 2,
            head_dim: 16,
            group_sizes: vec![4, 2],
            distr: DistrAttentionConfig::new(),
            rounds: 2,
            ranking: HeadRanking::Local,
        };
        let budget = 0.995;
        let alone = HeadSearch { ranking: HeadRanking::Alone, ..search.clone() };
        let mut ranking_trials = 0;
        let report = calibrate_heads(&mut model, &inputs, &alone, budget, |trial| ranking_trials += usize::from(trial.alone.is_some())).unwrap();
        assert_eq!(ranking_trials, 3 * 2 * 2);
        assert!(report.correlation >= budget);
        let report = calibrate_heads(&mut model, &inputs, &search, budget, |_| {}).unwrap();
        assert_eq!(report.search.ranking.len(), 3 * 2 * 2);
        assert!(report.search.ranking.iter().all(|candidate| candidate.error.is_finite()));
        assert!(report.correlation >= budget);
        assert!(report.search.group_sizes.iter().flatten().any(|&group_size| group_size > 1), "{report:#?}");
        let plan = report.search.plan.clone();
        model.backbone.set_attention(&ModelAttentionConfig::exact()).unwrap();
        let exact: Vec<Vec<f32>> = inputs.iter().map(|input| to_f32(model.forward(input.clone()).unwrap().saliency).unwrap()).collect();
        model.backbone.set_attention(&plan).unwrap();
        let worst = inputs
            .iter()
            .zip(&exact)
            .map(|(input, exact)| pearson(&to_f32(model.forward(input.clone()).unwrap().saliency).unwrap(), exact))
            .fold(f64::INFINITY, f64::min);
        assert_eq!(worst, report.correlation, "the plan scores what the search measured");
        assert!(calibrate_heads(&mut model, &[], &search, budget, |_| {}).is_err());
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
