//! `distr-llama perplexity`

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cli::args::{check_plan, require};
use crate::cli::{AttentionArgs, ModelArgs};
use crate::error::LlamaError;
use crate::evaluation::{score_window, windows};
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
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl PerplexityArgs {
    /// Checks the numeric flags; returns the stride.
    fn validate(&self) -> Result<usize, LlamaError> {
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
    let pretrained = args.model.load::<B>(device)?;
    check_plan(&plan, &pretrained.config)?;
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
    let windows = windows(ids.len(), args.context, stride)?;
    let runs = if args.compare_exact { 2 } else { 1 };
    let progress = ProgressBar::new((windows.len() * runs) as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} windows, {elapsed} (eta {eta})")
            .map_err(|e| e.to_string())?,
    );
    progress.set_message("scoring");

    let start = Instant::now();
    let exact = ModelAttentionConfig::exact();
    let (mut nll, mut correct, mut scored, mut agree) = (0.0, 0, 0, 0);
    for &(begin, end, first_target) in &windows {
        let window = &ids[begin..end];
        let score = score_window(&pretrained.model, window, first_target - begin, &plan, device)?;
        progress.inc(1);
        if args.compare_exact {
            let reference = score_window(&pretrained.model, window, first_target - begin, &exact, device)?;
            agree += score.predictions.iter().zip(&reference.predictions).filter(|(a, b)| a == b).count();
            progress.inc(1);
        }
        nll += score.negative_log_likelihood;
        correct += score.correct;
        scored += score.predictions.len();
    }
    progress.finish_and_clear();

    let perplexity = (nll / scored as f64).exp();
    let accuracy = correct as f64 / scored as f64;
    let agreement = args.compare_exact.then(|| agree as f64 / scored as f64);
    let attention: serde_json::Value = serde_json::from_str(&plan.to_string())?;
    let report = json!({
        "model": args.model.model.display().to_string(),
        "backend": args.model.backend.to_string(),
        "text": args.text.display().to_string(),
        "tokens": ids.len(),
        "scored": scored,
        "context": args.context,
        "stride": stride,
        "attention": attention,
        "perplexity": perplexity,
        "mean_nll": nll / scored as f64,
        "top1_accuracy": accuracy,
        "top1_agreement_with_exact": agreement,
        "seconds": start.elapsed().as_secs_f64(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!("tokens scored   {scored} (of {}, context {}, stride {stride})", ids.len(), args.context);
        println!("perplexity      {perplexity:.3}");
        println!("top-1 accuracy  {:.2}%", 100.0 * accuracy);
        if let Some(agreement) = agreement {
            println!("top-1 agreement with exact  {:.2}%", 100.0 * agreement);
        }
    }
    Ok(())
}
