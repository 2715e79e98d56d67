//! `distr-vit bench`: forward latency of the saliency model (or its backbone alone), exact vs
//! DistrAttention. JSON lines go to stdout (with `--json`, nothing else is printed), a table
//! and progress to stderr.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use clap::Args;
use distr_attn::backends::BackendRunner;
use distr_attn::experiment::progress::Progress;
use distr_attn::experiment::require;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use distr_vit::model::{SaliencyModel, SaliencyModelConfig, VitConfig};
use serde::Serialize;

use super::options::{load_saliency_model, CommonArgs};
use super::CliResult;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The model, `vit_s_focus.onnx`; without it the same architecture with random weights
    /// (latency does not depend on the weights).
    #[arg(long, alias = "onnx")]
    model: Option<PathBuf>,
    /// Weights written by `distr-vit finetune` (.mpk), loaded over the ONNX file's (needs
    /// --model).
    #[arg(long, requires = "model")]
    checkpoint: Option<PathBuf>,
    /// Square input sides (multiples of 14): 224 is 257 tokens, 518 is 1370.
    #[arg(long, value_delimiter = ',', default_value = "224,518")]
    sizes: Vec<usize>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Untimed passes before timing (kernel compilation, autotuning).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Timed passes.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Time the backbone alone (the DINOv2 ViT-S/14, what transformers' `Dinov2Model`
    /// computes), without the saliency decoder.
    #[arg(long)]
    backbone_only: bool,
    /// Print only the JSON lines (no table, no progress bar).
    #[arg(long)]
    json: bool,
    /// The approximate run: DistrAttention with these options unless --config gives a plan.
    #[command(flatten)]
    common: CommonArgs,
}

/// One timed configuration: a JSON line.
#[derive(Debug, Serialize)]
struct Timing {
    backend: String,
    dtype: String,
    size: usize,
    tokens: usize,
    batch: usize,
    attention: &'static str,
    /// What was timed: "backbone" or "saliency model" (backbone and decoder).
    part: &'static str,
    /// The approximate run's per-layer attention (absent for the exact run).
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<ModelAttentionConfig>,
    /// Where the weights came from: latency does not depend on their values.
    weights: &'static str,
    iters: usize,
    mean_ms: f64,
    median_ms: f64,
    min_ms: f64,
}

struct Run {
    args: BenchArgs,
    plan: ModelAttentionConfig,
}

impl BenchArgs {
    pub fn run(self) -> CliResult<()> {
        for (name, value) in [("--batch", self.batch), ("--iters", self.iters)] {
            require(value > 0, name, value, "expected at least 1")?;
        }
        require(!self.sizes.is_empty(), "--sizes", "(none)", "expected at least one input side")?;
        // Sides that are not a multiple of the patch would silently time a cropped input.
        let patch = VitConfig::dinov2_small().patch_size;
        for &size in &self.sizes {
            let expected = format!("expected a positive multiple of the patch size {patch} (224, 518, ...)");
            require(size > 0 && size % patch == 0, "--sizes", size, expected)?;
        }
        let plan = self.common.compared_plan("bench")?;
        let device = self.common.device;
        device.run(Run { args: self, plan })?
    }
}

impl BackendRunner for Run {
    type Output = CliResult<()>;

    fn run<B: DistrAttentionBackend>(self, device: B::Device) -> CliResult<()> {
        let exact = ModelAttentionConfig::exact();
        let mut model: SaliencyModel<B> = match &self.args.model {
            Some(path) => load_saliency_model(path, self.args.checkpoint.as_deref(), &exact, &device)?,
            None => SaliencyModelConfig::vit_s_focus(exact).init(&device)?,
        };
        let weights = match (&self.args.model, &self.args.checkpoint) {
            (Some(_), Some(_)) => "onnx + checkpoint",
            (Some(_), None) => "onnx",
            (None, _) => "random (vit_s_focus architecture, no ONNX file)",
        };
        if self.args.model.is_none() {
            eprintln!("no --model: timing the vit_s_focus architecture with random weights");
        }
        model.backbone.check_attention(&self.plan)?;
        let patch = model.backbone.patch_size;
        let passes = self.args.warmup + self.args.iters;
        let progress = Progress::bar(self.args.sizes.len() * 2 * passes, "passes", self.args.json);
        let mut timings = Vec::new();
        for &size in &self.args.sizes {
            let input = Tensor::<B, 4>::random([self.args.batch, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
            for (name, plan) in [("exact", ModelAttentionConfig::exact()), ("distr", self.plan.clone())] {
                model.backbone.set_attention(&plan)?;
                let mut times = Vec::with_capacity(self.args.iters);
                for iteration in 0..self.args.warmup + self.args.iters {
                    B::sync(&device).map_err(|error| format!("{error:?}"))?;
                    let start = Instant::now();
                    if self.args.backbone_only {
                        drop(model.backbone.forward(input.clone())?);
                    } else {
                        drop(model.forward(input.clone())?);
                    }
                    B::sync(&device).map_err(|error| format!("{error:?}"))?;
                    let milliseconds = start.elapsed().as_secs_f64() * 1e3;
                    let kind = if iteration >= self.args.warmup { "timed" } else { "warm-up" };
                    progress.step(format!("{size}x{size} {name} {kind}: {milliseconds:.1} ms"));
                    if iteration >= self.args.warmup {
                        times.push(milliseconds);
                    }
                }
                let mut timing = summarise(&self.args, size, 1 + (size / patch).pow(2), name, times);
                timing.weights = weights;
                timing.plan = (name == "distr").then(|| plan.clone());
                let line = serde_json::to_string(&timing)?;
                progress.suspend(|| println!("{line}"));
                timings.push(timing);
            }
        }
        progress.finish();
        if !self.args.json {
            print_table(&timings);
        }
        Ok(())
    }
}

fn summarise(args: &BenchArgs, size: usize, tokens: usize, attention: &'static str, mut times: Vec<f64>) -> Timing {
    times.sort_by(f64::total_cmp);
    let count = times.len().max(1);
    Timing {
        backend: args.common.device.backend.to_string(),
        dtype: args.common.device.dtype.to_string(),
        size,
        tokens,
        batch: args.batch,
        attention,
        part: if args.backbone_only { "backbone" } else { "saliency model" },
        plan: None,
        weights: "",
        iters: times.len(),
        mean_ms: times.iter().sum::<f64>() / count as f64,
        median_ms: times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
        min_ms: times.first().copied().unwrap_or(f64::NAN),
    }
}

/// The table goes to stderr so that stdout stays JSON lines.
fn print_table(timings: &[Timing]) {
    eprintln!("{:>6} {:>7} {:>7} {:>10} {:>10} {:>10} {:>8}", "size", "tokens", "attn", "mean ms", "median ms", "min ms", "speedup");
    for pair in timings.chunks(2) {
        for timing in pair {
            let speedup = pair[0].median_ms / timing.median_ms;
            eprintln!(
                "{:>6} {:>7} {:>7} {:>10.2} {:>10.2} {:>10.2} {:>8.2}",
                timing.size, timing.tokens, timing.attention, timing.mean_ms, timing.median_ms, timing.min_ms, speedup
            );
        }
    }
}

