//! Label-free recovery: the saliency model with DistrAttention in place (the student) learns
//! to reproduce the same model with exact attention (the teacher), on unlabelled images.
//!
//! The teacher's outputs are computed once per image ([`teacher_targets`]); training
//! ([`distill`]) then needs only the student's forward and backward passes. The loss matches
//! both the saliency map and the final token features ([`distillation_loss`]): the map is what
//! users see, the features carry the signal of every patch, also where the map is flat.

use burn::config::Config;
use burn::nn::Linear;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::LrScheduler;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use distr_attn::DistrAttentionBackend;

use crate::metrics::pearson;
use crate::model::{SaliencyModel, SaliencyOutput};
use crate::error::to_f32;
use crate::VitError;

/// Configuration of [`distill`].
#[derive(Config, Debug)]
pub struct DistillationConfig {
    /// Passes over the training images. Default: 3.
    #[config(default = 3)]
    pub epochs: usize,
    /// AdamW learning rate at the first step; a cosine schedule lowers it to
    /// `learning_rate * final_learning_rate_ratio` at the last. Default: 2e-5 (the weights
    /// are pretrained; larger steps forget more than the approximation costs).
    #[config(default = 2e-5)]
    pub learning_rate: f64,
    /// Learning rate at the last step, as a fraction of `learning_rate`. Default: 0.1.
    #[config(default = 0.1)]
    pub final_learning_rate_ratio: f64,
    /// AdamW's decoupled weight decay. Default: 1e-4 (AdamW's own; kept small because it
    /// pulls pretrained weights towards zero).
    #[config(default = 1e-4)]
    pub weight_decay: f64,
    /// Gradients are clipped to this L2 norm, parameter tensor by parameter tensor (Burn's
    /// clipping); 0 turns clipping off, as `distr-llama finetune --grad-clip 0` does.
    /// Default: 1.0.
    #[config(default = 1.0)]
    pub gradient_clip_norm: f64,
    /// Weight of the token-feature term against the saliency term. Default: 1.0.
    #[config(default = 1.0)]
    pub feature_weight: f64,
    /// Train only the attention projections (query, key, value, output of every block) and
    /// freeze the rest: fewer weights move, so less of the pretrained model is forgotten.
    /// Default: false.
    #[config(default = false)]
    pub attention_only: bool,
}

impl DistillationConfig {
    /// Checks every value against its range, for a run over `num_images` training images
    /// ([`distill`] calls it; callers may too, before the teacher's forward passes).
    pub fn check(&self, num_images: usize) -> Result<(), VitError> {
        let invalid = |name: &'static str, value: String, expected: &str| {
            Err(VitError::Config {
                name,
                value,
                expected: expected.into(),
            })
        };
        if self.epochs == 0 {
            return invalid("epochs", "0".into(), "at least 1");
        }
        if num_images == 0 {
            return invalid("training images", "0".into(), "at least one image");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return invalid("learning_rate", self.learning_rate.to_string(), "in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.final_learning_rate_ratio) {
            return invalid("final_learning_rate_ratio", self.final_learning_rate_ratio.to_string(), "in [0, 1]");
        }
        if !(self.gradient_clip_norm >= 0.0 && self.gradient_clip_norm.is_finite()) {
            return invalid("gradient_clip_norm", self.gradient_clip_norm.to_string(), "a finite norm, or 0 for no clipping");
        }
        if !(self.feature_weight >= 0.0) || !(self.weight_decay >= 0.0) {
            return invalid("feature_weight / weight_decay", format!("{} / {}", self.feature_weight, self.weight_decay), "non-negative");
        }
        Ok(())
    }
}

/// One training image and what the teacher makes of it.
#[derive(Debug, Clone)]
pub struct TeacherTarget<B: Backend> {
    /// Preprocessed image `[1, 3, height, width]`.
    pub input: Tensor<B, 4>,
    /// Teacher saliency `[1, 1, height, width]`.
    pub saliency: Tensor<B, 4>,
    /// Teacher final-norm tokens `[1, tokens, hidden]`.
    pub tokens: Tensor<B, 3>,
}

/// Runs `teacher` (whose attention should be exact) on every input.
pub fn teacher_targets<B: DistrAttentionBackend>(
    teacher: &SaliencyModel<B>,
    inputs: Vec<Tensor<B, 4>>,
) -> Result<Vec<TeacherTarget<B>>, VitError> {
    inputs
        .into_iter()
        .map(|input| {
            let output = teacher.forward(input.clone())?;
            Ok(TeacherTarget {
                input,
                saliency: output.saliency,
                tokens: output.tokens,
            })
        })
        .collect()
}

/// The loss: `||s - t||² / ||t - mean(t)||²` on the saliency maps plus `feature_weight *
/// ||f - g||² / ||g||²` on the tokens. Each term is relative, so neither depends on the scale
/// of its quantity; the saliency term is `1 - R²` of the student's map as a prediction of the
/// teacher's, the quantity the Pearson correlation reported by `eval` bounds.
pub fn distillation_loss<B: DistrAttentionBackend>(
    output: &SaliencyOutput<B>,
    saliency: Tensor<B, 4>,
    tokens: Tensor<B, 3>,
    feature_weight: f64,
) -> Tensor<B, 1> {
    let spread = saliency.clone() - saliency.clone().mean().reshape([1, 1, 1, 1]);
    let saliency_term = (output.saliency.clone() - saliency).powi_scalar(2).sum() / spread.powi_scalar(2).sum().add_scalar(1e-12);
    let feature_term = (output.tokens.clone() - tokens.clone()).powi_scalar(2).sum() / tokens.powi_scalar(2).sum().add_scalar(1e-12);
    saliency_term + feature_term.mul_scalar(feature_weight)
}

/// What [`distill`] reports after each optimiser step.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    /// Epoch, from 0.
    pub epoch: usize,
    /// Step, from 0, over all epochs.
    pub step: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// Learning rate of this step.
    pub learning_rate: f64,
    /// Loss of this step (before the update).
    pub loss: f64,
}

/// Distils `student` (already set to the attention it will run with) towards `targets`:
/// one image per step, in the given order, `config.epochs` times; AdamW with gradient
/// clipping and a cosine learning-rate schedule. `on_step` sees every step's loss.
pub fn distill<B>(
    student: SaliencyModel<B>,
    targets: &[TeacherTarget<B::InnerBackend>],
    config: &DistillationConfig,
    mut on_step: impl FnMut(&StepReport),
) -> Result<SaliencyModel<B>, VitError>
where
    B: AutodiffBackend + DistrAttentionBackend,
    B::InnerBackend: DistrAttentionBackend,
{
    config.check(targets.len())?;
    let mut model = if config.attention_only {
        attention_projections_only(student)
    } else {
        student
    };
    let mut optimizer = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .with_grad_clipping((config.gradient_clip_norm > 0.0).then(|| GradientClippingConfig::Norm(config.gradient_clip_norm as f32)))
        .init::<B, SaliencyModel<B>>();
    let total_steps = config.epochs * targets.len();
    let mut schedule = CosineAnnealingLrSchedulerConfig::new(config.learning_rate, total_steps)
        .with_min_lr(config.learning_rate * config.final_learning_rate_ratio)
        .init()
        .map_err(|message| VitError::Config {
            name: "learning-rate schedule",
            value: format!("{} over {total_steps} steps", config.learning_rate),
            expected: message,
        })?;
    for epoch in 0..config.epochs {
        for (index, target) in targets.iter().enumerate() {
            let learning_rate = schedule.step();
            let output = model.forward(Tensor::from_inner(target.input.clone()))?;
            let loss = distillation_loss(
                &output,
                Tensor::from_inner(target.saliency.clone()),
                Tensor::from_inner(target.tokens.clone()),
                config.feature_weight,
            );
            let value = loss.clone().into_scalar().elem::<f64>();
            let gradients = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(learning_rate, model, gradients);
            on_step(&StepReport {
                epoch,
                step: epoch * targets.len() + index,
                total_steps,
                learning_rate,
                loss: value,
            });
        }
    }
    Ok(model)
}

/// Freezes every weight but the four projections of each block's attention.
fn attention_projections_only<B: AutodiffBackend + DistrAttentionBackend>(model: SaliencyModel<B>) -> SaliencyModel<B> {
    fn trainable<B: AutodiffBackend>(linear: &mut Linear<B>) {
        linear.weight = linear.weight.clone().set_require_grad(true);
        linear.bias = linear.bias.take().map(|bias| bias.set_require_grad(true));
    }
    let mut model = model.no_grad();
    for block in &mut model.backbone.blocks {
        let attention = &mut block.attention;
        for linear in [&mut attention.query, &mut attention.key, &mut attention.value, &mut attention.output] {
            trainable(linear);
        }
    }
    model
}

/// Pearson correlation of `model`'s saliency map with each target's (held-out evaluation).
pub fn saliency_correlations<B: DistrAttentionBackend>(
    model: &SaliencyModel<B>,
    targets: &[TeacherTarget<B>],
) -> Result<Vec<f64>, VitError> {
    targets
        .iter()
        .map(|target| {
            let output = model.forward(target.input.clone())?;
            Ok(pearson(&to_f32(output.saliency)?, &to_f32(target.saliency.clone())?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use distr_attn::experiment::checkpoint::{load_checkpoint, save_checkpoint};
    use crate::model::saliency::tiny_saliency_config;
    use burn::backend::{Autodiff, NdArray};
    use burn::module::AutodiffModule;
    use burn::tensor::Distribution;
    use distr_attn::{DistrAttentionConfig, ModelAttentionConfig};

    type Inner = NdArray<f32>;
    type B = Autodiff<Inner>;

    fn mean_loss(model: &SaliencyModel<Inner>, targets: &[TeacherTarget<Inner>]) -> f64 {
        let total: f64 = targets
            .iter()
            .map(|target| {
                let output = model.forward(target.input.clone()).unwrap();
                distillation_loss(&output, target.saliency.clone(), target.tokens.clone(), 1.0)
                    .into_scalar()
                    .elem::<f64>()
            })
            .sum();
        total / targets.len() as f64
    }

    #[test]
    fn a_few_steps_lower_the_loss_and_the_checkpoint_reloads_identically() {
        let device = Default::default();
        B::seed(&device, 5);
        let mut student = tiny_saliency_config().init::<B>(&device).unwrap();
        let inputs: Vec<Tensor<Inner, 4>> = (0..3)
            .map(|_| Tensor::random([1, 3, 28, 28], Distribution::Normal(0.0, 1.0), &device))
            .collect();
        let targets = teacher_targets(&student.valid(), inputs).unwrap();

        let plan = ModelAttentionConfig::distr(DistrAttentionConfig::new().with_group_size(8));
        student.backbone.set_attention(&plan).unwrap();
        let before = mean_loss(&student.valid(), &targets);
        let config = DistillationConfig::new().with_epochs(4).with_learning_rate(1e-4);
        let mut losses = Vec::new();
        let trained = distill(student, &targets, &config, |step| losses.push(step.loss)).unwrap();
        assert_eq!(losses.len(), 12);
        let trained = trained.valid();
        let after = mean_loss(&trained, &targets);
        assert!(after < before, "loss {before} -> {after}");

        let path = std::env::temp_dir().join(format!("distr-vit-distill-{}", std::process::id()));
        let written = save_checkpoint(trained.clone(), &path).unwrap();
        Inner::seed(&device, 6);
        let fresh = tiny_saliency_config().init::<Inner>(&device).unwrap();
        let mut reloaded = load_checkpoint(fresh, &written, &device).unwrap();
        std::fs::remove_file(&written).ok();
        reloaded.backbone.set_attention(&plan).unwrap();
        let expected = to_f32(trained.forward(targets[0].input.clone()).unwrap().saliency).unwrap();
        let actual = to_f32(reloaded.forward(targets[0].input.clone()).unwrap().saliency).unwrap();
        assert_eq!(actual, expected);
    }

    #[test]
    fn freezing_trains_only_the_attention_projections() {
        let device = Default::default();
        let student = tiny_saliency_config().init::<B>(&device).unwrap();
        let frozen = attention_projections_only(student);
        let block = &frozen.backbone.blocks[0];
        assert!(block.attention.query.weight.val().is_require_grad());
        assert!(!block.mlp.fc1.weight.val().is_require_grad());
        assert!(!frozen.decoder.final_conv.weight.val().is_require_grad());
    }

    #[test]
    fn bad_settings_are_errors() {
        let device = Default::default();
        let student = tiny_saliency_config().init::<B>(&device).unwrap();
        let config = DistillationConfig::new().with_learning_rate(0.0);
        assert!(distill(student, &[], &config, |_| {}).is_err());
    }
}
