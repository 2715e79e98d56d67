//! `distr-llama calibrate`

use std::error::Error;
use std::path::PathBuf;

use burn::config::Config;
use clap::Args;
use distr_attn::DistrAttentionBackend;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::calibrate::{calibrate, AttentionFlops, CalibrationConfig};
use crate::cli::args::require;
use crate::cli::{AttentionArgs, ModelArgs};
use crate::finetune::corpus::{text_files, tokenize_files};

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// DistrAttention parameters of the candidates (--group-size, --attention and --config
    /// are not used: the group sizes come from --group-sizes).
    #[command(flatten)]
    pub attention: AttentionArgs,
    /// Calibration text: files, or directories of .md / .txt files. Repeatable.
    #[arg(long, required = true)]
    pub text: Vec<PathBuf>,
    /// Use only the first N calibration tokens.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: usize,
    /// Tokens per forward pass.
    #[arg(long, default_value_t = 512)]
    pub context: usize,
    /// Largest allowed perplexity increase over exact attention, relative (0.01 = 1%).
    #[arg(long, default_value_t = 0.01)]
    pub max_perplexity_increase: f64,
    /// Group sizes tried per layer, largest first.
    #[arg(long, value_delimiter = ',', default_value = "8,4,2")]
    pub group_sizes: Vec<usize>,
    /// Where to write the attention config (JSON, for --config).
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl CalibrateArgs {
    fn validate(&self) -> Result<(), crate::error::LlamaError> {
        require(self.max_tokens >= 2, "--max-tokens", self.max_tokens, "expected at least 2")?;
        require(self.context >= 2, "--context", self.context, "expected at least 2")?;
        require(
            self.max_perplexity_increase >= 0.0 && self.max_perplexity_increase.is_finite(),
            "--max-perplexity-increase",
            self.max_perplexity_increase,
            "expected a finite number, at least 0",
        )?;
        require(!self.group_sizes.is_empty(), "--group-sizes", "(none)", "expected at least one group size")?;
        for &group_size in &self.group_sizes {
            require(
                (2..=distr_attn::MAX_GROUP_SIZE).contains(&group_size),
                "--group-sizes",
                group_size,
                format!("expected 2 to {}, dividing the model's head_dim", distr_attn::MAX_GROUP_SIZE),
            )?;
        }
        Ok(())
    }
}

pub fn run<B: DistrAttentionBackend>(args: CalibrateArgs, device: &B::Device) -> Result<(), Box<dyn Error>> {
    args.validate()?;
    let base = args.attention.op_config()?;
    let pretrained = args.model.load::<B>(device)?;
    let mut ids = tokenize_files(&pretrained.tokenizer, &text_files(&args.text)?)?;
    ids.truncate(args.max_tokens);
    // Windows hold min(context, tokens) tokens.
    let max_seq_len = pretrained.config.max_seq_len;
    if ids.len() > max_seq_len {
        require(args.context <= max_seq_len, "--context", args.context, format!("expected at most the model's {max_seq_len}"))?;
    }
    let config = CalibrationConfig::new()
        .with_max_perplexity_increase(args.max_perplexity_increase)
        .with_group_sizes(args.group_sizes.clone())
        .with_context(args.context);
    let num_layers = pretrained.config.num_layers;
    let progress = ProgressBar::new((num_layers * args.group_sizes.len()) as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} trials (at most), {elapsed}")
            .map_err(|e| e.to_string())?,
    );
    let calibration = calibrate(&pretrained.model, &ids, &base, &config, device, |trial| {
        progress.set_message(format!(
            "layer {} G={} perplexity {:.3} {}",
            trial.layer,
            trial.group_size,
            trial.perplexity,
            if trial.accepted { "kept" } else { "over budget" }
        ));
        progress.inc(1);
    })?;
    progress.finish_and_clear();
    calibration.plan.save(&args.out).map_err(|e| format!("cannot write `{}`: {e}", args.out.display()))?;
    let flops = AttentionFlops::of(&pretrained.config, &calibration.plan, args.context.min(ids.len()))?;
    let group_sizes: Vec<usize> = (0..num_layers)
        .map(|layer| calibration.plan.kind_for_layer(layer, num_layers).map(|kind| kind.op_config().group_size))
        .collect::<Result<_, _>>()?;
    if args.json {
        println!(
            "{}",
            json!({
                "model": args.model.model.display().to_string(),
                "backend": args.model.backend.to_string(),
                "calibration_tokens": ids.len(),
                "context": args.context,
                "max_perplexity_increase": args.max_perplexity_increase,
                "exact_perplexity": calibration.exact_perplexity,
                "perplexity": calibration.perplexity,
                "budget": calibration.budget,
                "group_size_per_layer": group_sizes,
                "flops": flops,
                "trials": calibration.trials,
                "config": args.out.display().to_string(),
            })
        );
    } else {
        println!("calibration tokens      {}", ids.len());
        println!("perplexity              exact {:.4}, calibrated {:.4} (budget {:.4})", calibration.exact_perplexity, calibration.perplexity, calibration.budget);
        println!("group size per layer    {group_sizes:?} (1 = exact)");
        println!(
            "score-product FLOPs     {:.3} G of {:.3} G exact at {} tokens: {:.1}% saved",
            flops.planned / 1e9,
            flops.exact / 1e9,
            flops.seq,
            100.0 * flops.saved_fraction
        );
        println!("config                  {}", args.out.display());
    }
    Ok(())
}
