//! `distr-llama perplexity`

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use distr_attn::experiment::progress::Progress;
use distr_attn::experiment::{require, ExperimentError};
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use serde_json::json;

use crate::cli::{AttentionArgs, ModelArgs};
use crate::error::LlamaError;
use crate::evaluation::{score_text, windows};
use crate::tokenizer::Tokenizer;

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub attention: AttentionArgs,
    /// UTF-8 text file to score.
    #[arg(long)]
    pub text: PathBuf,
    /// Score only the first N tokens of the text (at least 2).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Tokens per forward pass (at least 2, at most the model's context).
    #[arg(long, default_value_t = 1024)]
    pub context: usize,
    /// New tokens scored per window after the first (1 to --context - 1); default context / 2.
    #[arg(long)]
    pub stride: Option<usize>,
    /// Also run exact attention and report top-1 agreement with it.
    #[arg(long)]
    pub compare_exact: bool,
    /// Hyperplane draws: score with the plan as given, then with every seed moved by 1, 2, ...
    /// up to this many draws; the report gives each draw's perplexity, their mean and range.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Print one JSON object instead of a table (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

impl PerplexityArgs {
    /// Checks the numeric flags; returns the stride.
    fn validate(&self) -> Result<usize, ExperimentError> {
        require(self.context >= 2, "--context", self.context, "expected at least 2 tokens")?;
        let stride = self.stride.unwrap_or(self.context / 2);
        require(
            (1..self.context).contains(&stride),
            "--stride",
            stride,
            format!("expected 1 to --context - 1 = {}", self.context - 1),
        )?;
        if let Some(max) = self.max_tokens {
            require(max >= 2, "--max-tokens", max, "expected at least 2: the first token is never scored")?;
        }
        require(self.seeds >= 1, "--seeds", self.seeds, "expected at least one hyperplane draw")?;
        Ok(stride)
    }
}

pub fn run<B: DistrAttentionBackend>(args: PerplexityArgs, device: &B::Device) -> Result<(), Box<dyn Error>> {
    let stride = args.validate()?;
    let plan = args.attention.plan()?;
    let pretrained = args.model.load::<B>(&plan, device)?;
    let text = std::fs::read_to_string(&args.text).map_err(LlamaError::io(&args.text))?;
    let mut ids = pretrained.tokenizer.encode(&text)?;
    if let Some(max) = args.max_tokens {
        ids.truncate(max);
    }
    if ids.len() < 2 {
        return Err(LlamaError::TooFewTokens { what: format!("`{}`", args.text.display()), tokens: ids.len(), needed: 2 }.into());
    }
    // Windows hold min(context, tokens) tokens.
    let max_seq_len = pretrained.model.max_seq_len;
    if ids.len() > max_seq_len {
        require(args.context <= max_seq_len, "--context", args.context, format!("expected at most the model's {max_seq_len}"))?;
    }
    let runs = args.seeds as usize + usize::from(args.compare_exact);
    let progress = Progress::bar(windows(ids.len(), args.context, stride)?.len() * runs, "windows", args.json);

    let start = Instant::now();
    let model = &pretrained.model;
    let on_window = |label: &'static str| {
        let progress = &progress;
        move |window: &crate::evaluation::WindowScore| {
            progress.step(format!("{label}: {:.3} nats/token", window.negative_log_likelihood / window.predictions.len() as f64))
        }
    };
    let mut scores = vec![score_text(model, &ids, args.context, stride, device, on_window("planned"))?];
    for offset in 1..args.seeds {
        let draw = model.clone().with_attention(&plan.reseeded(offset))?;
        scores.push(score_text(&draw, &ids, args.context, stride, device, on_window("planned"))?);
    }
    let agreements = if args.compare_exact {
        let exact = model.clone().with_attention(&ModelAttentionConfig::exact())?;
        let reference = score_text(&exact, &ids, args.context, stride, device, on_window("exact"))?;
        Some(scores.iter().map(|score| score.agreement(&reference)).collect::<Vec<_>>())
    } else {
        None
    };
    progress.finish();

    let results: Vec<_> = scores.iter().map(|score| score.perplexity()).collect();
    let per_seed: Vec<f64> = results.iter().map(|result| result.perplexity).collect();
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let range = [per_seed.iter().copied().fold(f64::INFINITY, f64::min), per_seed.iter().copied().fold(0.0, f64::max)];
    let top1: Vec<f64> = results.iter().map(|result| result.top1_accuracy).collect();
    let agreement = agreements.as_deref().map(mean);
    let result = &results[0];
    let attention = serde_json::to_value(&plan)?;
    let report = json!({
        "model": args.model.model.display().to_string(),
        "backend": args.model.device.backend.to_string(),
        "dtype": args.model.device.dtype.to_string(),
        "text": args.text.display().to_string(),
        "tokens": ids.len(),
        "scored": result.scored,
        "context": args.context,
        "stride": stride,
        "attention": attention,
        "seeds": args.seeds,
        "perplexity": mean(&per_seed),
        "perplexity_per_seed": per_seed,
        "perplexity_range": range,
        "mean_nll": mean(&results.iter().map(|result| result.mean_nll).collect::<Vec<_>>()),
        "top1_accuracy": mean(&top1),
        "top1_agreement_with_exact": agreement,
        "top1_agreement_per_seed": agreements,
        "seconds": start.elapsed().as_secs_f64(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!("tokens scored   {} (of {}, context {}, stride {stride})", result.scored, ids.len(), args.context);
        if args.seeds > 1 {
            println!("perplexity      {:.3} (mean of {} hyperplane draws, {:.3} to {:.3})", mean(&per_seed), args.seeds, range[0], range[1]);
        } else {
            println!("perplexity      {:.3}", mean(&per_seed));
        }
        println!("top-1 accuracy  {:.2}%", 100.0 * mean(&top1));
        if let Some(agreement) = agreement {
            println!("top-1 agreement with exact  {:.2}%", 100.0 * agreement);
        }
    }
    Ok(())
}
