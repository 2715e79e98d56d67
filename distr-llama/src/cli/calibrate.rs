//! `distr-llama calibrate`

use std::error::Error;
use std::path::PathBuf;

use burn::config::Config;
use clap::Args;
use distr_attn::experiment::args::SearchArgs;
use distr_attn::experiment::calibration::{AttentionFlops, LayerOrder};
use distr_attn::experiment::output::check_writable;
use distr_attn::experiment::progress::Progress;
use distr_attn::experiment::{require, ExperimentError};
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use serde_json::json;

use crate::calibrate::{calibrate, calibrate_heads, PerplexityBudget};
use crate::cli::ModelArgs;
use crate::finetune::corpus::{text_files, tokenize_files};

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The candidates: group sizes, layer order (default last-first: early layers are the
    /// most sensitive) or --per-head, and the DistrAttention parameters besides the group
    /// size.
    #[command(flatten)]
    pub search: SearchArgs,
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
    /// Where to write the attention config (JSON, for --config).
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON object instead of a table (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

impl CalibrateArgs {
    fn validate(&self) -> Result<(), ExperimentError> {
        require(self.max_tokens >= 2, "--max-tokens", self.max_tokens, "expected at least 2")?;
        require(self.context >= 2, "--context", self.context, "expected at least 2")?;
        require(
            self.max_perplexity_increase >= 0.0 && self.max_perplexity_increase.is_finite(),
            "--max-perplexity-increase",
            self.max_perplexity_increase,
            "expected a finite number, at least 0",
        )?;
        self.search.validate()?;
        check_writable(&self.out)
    }
}

pub fn run<B: DistrAttentionBackend>(args: CalibrateArgs, device: &B::Device) -> Result<(), Box<dyn Error>> {
    args.validate()?;
    let mut pretrained = args.model.load::<B>(&ModelAttentionConfig::exact(), device)?;
    let config = pretrained.config.clone();
    let (num_layers, num_heads, head_dim) = (config.num_layers, config.num_heads, pretrained.model.head_dim());
    let mut ids = tokenize_files(&pretrained.tokenizer, &text_files(&args.text)?)?;
    ids.truncate(args.max_tokens);
    // Windows hold min(context, tokens) tokens.
    let max_seq_len = config.max_seq_len;
    if ids.len() > max_seq_len {
        require(args.context <= max_seq_len, "--context", args.context, format!("expected at most the model's {max_seq_len}"))?;
    }
    let budget = PerplexityBudget { max_increase: args.max_perplexity_increase, context: args.context };
    let model = &mut pretrained.model;
    let (chosen, details) = if args.search.per_head {
        let search = args.search.head_search(num_layers, num_heads, head_dim)?;
        let progress = Progress::bar(search.max_trials(), "trials (at most)", args.json);
        let calibration = calibrate_heads(model, &ids, &search, budget, device, |trial| {
            let verdict = if trial.accepted { "kept" } else { "over budget" };
            progress.step(format!("{trial} perplexity {:.3} {verdict}", trial.score));
        })?;
        progress.finish();
        let converted: usize = calibration.search.group_sizes.iter().flatten().filter(|&&group_size| group_size > 1).count();
        let details = json!({
            "granularity": "head",
            "rounds": search.rounds,
            "ranked_by": search.ranking,
            "converted_heads": converted,
            "group_size_per_head": calibration.search.group_sizes,
            "trials": calibration.search.trials,
            "ranking": calibration.search.ranking,
            "chosen": calibration.search.chosen,
        });
        (calibration.map(|search| search.plan), details)
    } else {
        let search = args.search.search(num_layers, num_heads, head_dim, LayerOrder::LastFirst)?;
        let progress = Progress::bar(search.max_trials(), "trials (at most)", args.json);
        let calibration = calibrate(model, &ids, &search, budget, device, |trial| {
            let verdict = if trial.accepted { "kept" } else { "over budget" };
            progress.step(format!("layer {} G={} perplexity {:.3} {verdict}", trial.layer, trial.group_size, trial.score));
        })?;
        progress.finish();
        let details = json!({
            "granularity": "layer",
            "order": search.order,
            "group_size_per_layer": calibration.search.group_sizes,
            "trials": calibration.search.trials,
        });
        (calibration.map(|search| search.plan), details)
    };
    let plan = &chosen.search;
    plan.save(&args.out).map_err(|source| ExperimentError::Io { path: args.out.clone(), source })?;
    let tokens = args.context.min(ids.len());
    let flops = AttentionFlops::of(plan, num_layers, num_heads, config.head_dim, tokens)?;
    if args.json {
        let mut line = json!({
            "model": args.model.model.display().to_string(),
            "backend": args.model.device.backend.to_string(),
            "dtype": args.model.device.dtype.to_string(),
            "calibration_tokens": ids.len(),
            "context": args.context,
            "max_perplexity_increase": args.max_perplexity_increase,
            "exact_perplexity": chosen.exact_perplexity,
            "perplexity": chosen.perplexity,
            "budget": chosen.budget,
            "flops": flops,
            "config": args.out.display().to_string(),
        });
        if let (Some(line), Some(details)) = (line.as_object_mut(), details.as_object()) {
            line.extend(details.clone());
        }
        println!("{line}");
    } else {
        println!("calibration tokens      {}", ids.len());
        println!("perplexity              exact {:.4}, calibrated {:.4} (budget {:.4})", chosen.exact_perplexity, chosen.perplexity, chosen.budget);
        if let Some(converted) = details["converted_heads"].as_u64() {
            println!("heads converted         {converted} of {}", num_layers * num_heads);
        } else {
            println!("group size per layer    {} (1 = exact)", details["group_size_per_layer"]);
        }
        println!(
            "attention FLOPs         {:.3} G of {:.3} G exact at {} tokens: {:.1}% saved ({:.1}% of the score product)",
            flops.planned / 1e9,
            flops.exact / 1e9,
            flops.tokens,
            100.0 * flops.saved_fraction,
            100.0 * flops.score_product_saved_fraction
        );
        println!("config                  {}", args.out.display());
    }
    Ok(())
}
