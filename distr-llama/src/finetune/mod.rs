//! Fine-tuning a [`Llama`] with its attention plan (DistrAttention or exact) in place.
//!
//! Gradients flow through `distr_attn::distr_attention` on `Autodiff<_>` backends (the
//! tensor-op reference path is recomputed for the backward; the grouping permutation is a
//! constant). AdamW with a warm-up + cosine [`schedule`], gradient clipping, and the choice
//! of [`loss`] and of [`trainable`] parameters come from a [`FinetuneConfig`].

pub mod corpus;
pub mod loss;
pub mod schedule;
pub mod trainable;

use std::time::Instant;

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use serde::Serialize;

pub use corpus::TokenCorpus;
pub use loss::Loss;
pub use schedule::LearningRateSchedule;
pub use trainable::Trainable;

use crate::error::{self, LlamaError};
use crate::model::{Llama, LoraConfig};

/// How to fine-tune.
#[derive(Config, Debug)]
pub struct FinetuneConfig {
    /// Optimizer steps. Default: 100.
    #[config(default = 100)]
    pub steps: usize,
    /// Sequences per step. Default: 8.
    #[config(default = 8)]
    pub batch_size: usize,
    /// Tokens per sequence. Default: 256.
    #[config(default = 256)]
    pub seq_len: usize,
    /// Peak learning rate. Default: 1e-4 (full fine-tuning of a pretrained model; LoRA
    /// usually wants about 1e-3).
    #[config(default = 1e-4)]
    pub learning_rate: f64,
    /// Linear warm-up steps. Default: 10.
    #[config(default = 10)]
    pub warmup_steps: usize,
    /// Final learning rate of the cosine decay, as a fraction of the peak. Default: 0.1.
    #[config(default = 0.1)]
    pub floor_ratio: f64,
    /// AdamW's decoupled weight decay. Default: 0.01.
    #[config(default = 0.01)]
    pub weight_decay: f64,
    /// Largest L2 norm of each parameter tensor's gradient (Burn clips per tensor); `None`
    /// for no clipping. Default: 1.0.
    #[config(default = "Some(1.0)")]
    pub grad_clip_norm: Option<f64>,
    /// The objective. Default: next-token cross-entropy.
    #[config(default = "Loss::Lm")]
    pub loss: Loss,
    /// The parameters updated. Default: all.
    #[config(default = "Trainable::All")]
    pub train: Trainable,
    /// Adapter rank with [`Trainable::Lora`]. Default: 8.
    #[config(default = 8)]
    pub lora_rank: usize,
    /// Adapter scale numerator (`alpha / rank`). Default: 16.
    #[config(default = 16.0)]
    pub lora_alpha: f64,
}

impl FinetuneConfig {
    /// Checks every parameter's range (what [`finetune`] would refuse).
    pub fn validate(&self) -> error::Result<()> {
        let positive = [("steps", self.steps), ("batch_size", self.batch_size), ("lora_rank", self.lora_rank)];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(LlamaError::Config(format!("fine-tuning {name} must be positive")));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(LlamaError::Config(format!("learning rate {} must be positive", self.learning_rate)));
        }
        if let Some(norm) = self.grad_clip_norm.filter(|norm| !(*norm > 0.0 && norm.is_finite())) {
            return Err(LlamaError::Config(format!("gradient clipping norm {norm} must be positive")));
        }
        if self.seq_len < 2 {
            return Err(LlamaError::Config(format!("sequence length {}: need at least 2 tokens", self.seq_len)));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(LlamaError::Config(format!("weight decay {} must be at least 0", self.weight_decay)));
        }
        if !(0.0..=1.0).contains(&self.floor_ratio) {
            return Err(LlamaError::Config(format!("floor ratio {} must lie in [0, 1]", self.floor_ratio)));
        }
        if !(self.lora_alpha > 0.0 && self.lora_alpha.is_finite()) {
            return Err(LlamaError::Config(format!("LoRA alpha {} must be positive", self.lora_alpha)));
        }
        Ok(())
    }

    pub fn schedule(&self) -> LearningRateSchedule {
        LearningRateSchedule::new(self.learning_rate, self.steps)
            .with_warmup_steps(self.warmup_steps.min(self.steps))
            .with_floor_ratio(self.floor_ratio)
    }
}

/// One optimizer step, as the progress callback sees it.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: usize,
    pub loss: f64,
    pub learning_rate: f64,
    /// Tokens of this step (`batch_size * seq_len`).
    pub tokens: usize,
    pub seconds: f64,
}

/// What a fine-tuning run did.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneReport {
    pub steps: usize,
    pub tokens: usize,
    pub trainable_parameters: usize,
    /// The loss of every step.
    pub losses: Vec<f64>,
    /// Time of all steps (what `on_step` does in between not counted).
    pub seconds: f64,
    /// The first step alone: it includes kernel compilation and autotuning on GPUs.
    pub first_step_seconds: f64,
    /// Training throughput over the steps after the first.
    pub tokens_per_second: Option<f64>,
}

/// Fine-tunes `model` on `corpus` with its attention plan in place; returns the trained model
/// (adapters merged, off the autodiff graph, same plan) and a report. `on_step` sees every
/// step and the model after it (to evaluate it mid-run: its time is not counted as training
/// time); an error it returns stops the run. The distillation teacher is the starting model
/// with exact attention.
pub fn finetune<B>(
    model: Llama<B>,
    corpus: &TokenCorpus,
    config: &FinetuneConfig,
    device: &B::Device,
    mut on_step: impl FnMut(&StepReport, &Llama<B>) -> error::Result<()>,
) -> error::Result<(Llama<B::InnerBackend>, FinetuneReport)>
where
    B: AutodiffBackend + DistrAttentionBackend,
    B::InnerBackend: DistrAttentionBackend,
{
    config.validate()?;
    let teacher = match config.loss {
        Loss::Distill => Some(model.valid().with_attention(&ModelAttentionConfig::exact())?),
        Loss::Lm => None,
    };
    let lora = LoraConfig::new(config.lora_rank).with_alpha(config.lora_alpha);
    let mut model = trainable::prepare(model, config.train, &lora, device);
    let trainable_parameters = trainable::count_trainable(&model);
    if trainable_parameters == 0 {
        return Err(LlamaError::Config("no parameter is trainable".into()));
    }
    let mut optimizer = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .with_grad_clipping(config.grad_clip_norm.map(|norm| GradientClippingConfig::Norm(norm as f32)))
        .init::<B, Llama<B>>();
    let schedule = config.schedule();

    let mut losses = Vec::with_capacity(config.steps);
    let (mut first_step_seconds, mut seconds) = (0.0, 0.0);
    for step in 0..config.steps {
        let step_start = Instant::now();
        let tokens = batch_tokens::<B>(&corpus.batch(step, config.batch_size), device);
        let logits = model.forward(tokens.clone(), &mut model.new_cache())?;
        let loss = match &teacher {
            None => loss::language_model_loss(logits, tokens),
            Some(teacher) => {
                let target = teacher.forward(tokens.inner(), &mut teacher.new_cache())?;
                loss::distillation_loss(logits, Tensor::from_inner(target))
            }
        };
        let loss_value: f64 = loss.clone().into_scalar().elem();
        if !loss_value.is_finite() {
            return Err(LlamaError::Config(format!(
                "the loss is {loss_value} at step {step}: lower the learning rate"
            )));
        }
        let learning_rate = schedule.at(step);
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(learning_rate, model, gradients);
        losses.push(loss_value);
        let step_seconds = step_start.elapsed().as_secs_f64();
        seconds += step_seconds;
        if step == 0 {
            first_step_seconds = step_seconds;
        }
        let tokens = config.batch_size * config.seq_len;
        on_step(&StepReport { step, loss: loss_value, learning_rate, tokens, seconds: step_seconds }, &model)?;
    }
    let tokens = config.steps * config.batch_size * config.seq_len;
    let steady_tokens = tokens - config.batch_size * config.seq_len;
    let report = FinetuneReport {
        steps: config.steps,
        tokens,
        trainable_parameters,
        losses,
        seconds,
        first_step_seconds,
        tokens_per_second: (config.steps > 1).then(|| steady_tokens as f64 / (seconds - first_step_seconds)),
    };
    Ok((model.valid().merge_adapters(), report))
}

/// Token ids `[batch, seq]` of equally long sequences.
fn batch_tokens<B: AutodiffBackend>(sequences: &[&[u32]], device: &B::Device) -> Tensor<B, 2, Int> {
    let seq = sequences[0].len();
    let ids: Vec<i64> = sequences.iter().flat_map(|s| s.iter().map(|&id| i64::from(id))).collect();
    Tensor::from_data(TensorData::new(ids, [sequences.len(), seq]), device)
}
