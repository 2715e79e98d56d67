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
    let runs = if args.compare_exact { 2 } else { 1 };
    let progress = Progress::bar(windows(ids.len(), args.context, stride)?.len() * runs, "windows", args.json);

    let start = Instant::now();
    let model = &pretrained.model;
    let on_window = |label: &'static str| {
        let progress = &progress;
        move |window: &crate::evaluation::WindowScore| {
            progress.step(format!("{label}: {:.3} nats/token", window.negative_log_likelihood / window.predictions.len() as f64))
        }
    };
    let score = score_text(model, &ids, args.context, stride, device, on_window("planned"))?;
    let agreement = if args.compare_exact {
        let exact = model.clone().with_attention(&ModelAttentionConfig::exact())?;
        let reference = score_text(&exact, &ids, args.context, stride, device, on_window("exact"))?;
        Some(score.agreement(&reference))
    } else {
        None
    };
    progress.finish();

    let result = score.perplexity();
    let attention = serde_json::to_value(&plan)?;
    let report = json!({
        "model": args.model.model.display().to_string(),
        "backend": args.model.backend.to_string(),
        "text": args.text.display().to_string(),
        "tokens": ids.len(),
        "scored": result.scored,
        "context": args.context,
        "stride": stride,
        "attention": attention,
        "perplexity": result.perplexity,
        "mean_nll": result.mean_nll,
        "top1_accuracy": result.top1_accuracy,
        "top1_agreement_with_exact": agreement,
        "seconds": start.elapsed().as_secs_f64(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!("tokens scored   {} (of {}, context {}, stride {stride})", result.scored, ids.len(), args.context);
        println!("perplexity      {:.3}", result.perplexity);
        println!("top-1 accuracy  {:.2}%", 100.0 * result.top1_accuracy);
        if let Some(agreement) = agreement {
            println!("top-1 agreement with exact  {:.2}%", 100.0 * agreement);
        }
    }
    Ok(())
}
