//! `distr-llama bench`: prefill and decode throughput, exact vs DistrAttention; with
//! `--train`, the time of one fine-tuning step instead.
//!
//! For each context length C the prompt is `C - decode_tokens` tokens of the text (repeated
//! as needed), so that the last decode step attends over C positions. Each measurement runs
//! once untimed first (kernel compilation, autotuning), then `--repeats` times; the best
//! run is reported. Reading the logits back to the host is the device sync. JSON lines go to
//! stdout (with `--json`, nothing else is printed), a table and progress to stderr.
//!
//! A training step ([`run_train`]) is the forward of one sequence of C tokens, the
//! next-token loss and its backward through `Autodiff` (no optimizer update: it costs the
//! same whatever the attention), ended by a device sync.

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use distr_attn::experiment::progress::Progress;
use distr_attn::experiment::{require, ExperimentError};
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use serde_json::json;

use crate::cli::{AttentionArgs, ModelArgs};
use crate::error::LlamaError;
use crate::finetune::loss::language_model_loss;
use crate::generation::host_row;
use crate::model::Llama;
use crate::pretrained::load_random;
use crate::sampling::argmax;
use crate::tokenizer::Tokenizer;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The DistrAttention setting compared with exact attention (DistrAttention with its
    /// options unless --config gives a plan).
    #[command(flatten)]
    pub attention: AttentionArgs,
    /// Context lengths, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "512,2048,8192")]
    pub context: Vec<usize>,
    /// Decode steps timed at the end of each context (at least 1).
    #[arg(long, default_value_t = 32)]
    pub decode_tokens: usize,
    /// Timed repetitions (best reported; at least 1).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Text whose tokens form the prompts.
    #[arg(long, default_value = "distr-llama/data/hamlet-act1-scene1.md")]
    pub text: PathBuf,
    /// Seeded random weights in the model's configuration instead of its weights (latency
    /// does not depend on weight values): --model may then be a directory holding only
    /// config.json and tokenizer.json.
    #[arg(long)]
    pub random_weights: bool,
    /// Time a fine-tuning step (forward, loss and backward of one sequence of each context
    /// length) instead of prefill and decode.
    #[arg(long)]
    pub train: bool,
    /// Print only the JSON lines (no table, no progress bar).
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    fn validate(&self) -> Result<(), ExperimentError> {
        require(!self.context.is_empty(), "--context", "(none)", "expected at least one context length")?;
        require(self.decode_tokens >= 1, "--decode-tokens", self.decode_tokens, "expected at least 1")?;
        require(self.repeats >= 1, "--repeats", self.repeats, "expected at least 1")?;
        for &context in &self.context {
            require(
                context > self.decode_tokens,
                "--context",
                context,
                format!("expected more than --decode-tokens {} (the prompt is the rest)", self.decode_tokens),
            )?;
        }
        Ok(())
    }
}

/// The model (random or loaded weights), the text's tokens and the two attention settings
/// compared, after checking the arguments against the model.
fn prepare<B: DistrAttentionBackend>(
    args: &BenchArgs,
    device: &B::Device,
) -> Result<(Llama<B>, Vec<u32>, [(&'static str, ModelAttentionConfig); 2]), Box<dyn Error>> {
    args.validate()?;
    let distr_plan = args.attention.compared_plan("bench")?;
    let mut pretrained = if args.random_weights {
        load_random::<B>(&args.model.model, 0, device)?
    } else {
        args.model.load::<B>(&ModelAttentionConfig::exact(), device)?
    };
    pretrained.model.set_attention(&distr_plan)?;
    let settings = [("exact", ModelAttentionConfig::exact()), ("distr", distr_plan)];
    let text = std::fs::read_to_string(&args.text).map_err(LlamaError::io(&args.text))?;
    let text_ids = pretrained.tokenizer.encode(&text)?;
    if text_ids.is_empty() {
        return Err(LlamaError::Empty("the benchmark text has no tokens").into());
    }
    let max_seq_len = pretrained.model.max_seq_len;
    for &context in &args.context {
        require(context <= max_seq_len, "--context", context, format!("expected at most the model's {max_seq_len}"))?;
    }
    Ok((pretrained.model, text_ids, settings))
}

/// `--train`: the best of `--repeats` fine-tuning steps (after one untimed) per context length
/// and attention setting, on `Autodiff` of the command's backend.
pub fn run_train<B>(args: BenchArgs, device: &B::Device) -> Result<(), Box<dyn Error>>
where
    B: AutodiffBackend + DistrAttentionBackend,
{
    let (mut model, text_ids, settings) = prepare::<B>(&args, device)?;
    let progress = Progress::bar(args.context.len() * settings.len() * (args.repeats + 1), "steps", args.json);
    let mut rows = Vec::new();
    for &context in &args.context {
        let sequence: Vec<u32> = text_ids.iter().copied().cycle().take(context).collect();
        for (name, plan) in &settings {
            model.set_attention(plan)?;
            let mut best = f64::INFINITY;
            let mut warm_up = f64::NAN;
            for repeat in 0..=args.repeats {
                let seconds = train_step(&model, &sequence, device)?;
                let kind = if repeat == 0 { "warm-up" } else { "timed" };
                let message = format!("context {context}, {name}, {kind}: {seconds:.3} s");
                // With --json no bar is drawn: each step goes to stderr as a line, so a run cut
                // short by a time limit still says how far it got.
                if args.json {
                    eprintln!("{message}");
                }
                progress.step(message);
                if repeat == 0 {
                    warm_up = seconds;
                } else {
                    best = best.min(seconds);
                }
            }
            let row = json!({
                "backend": args.model.device.backend.to_string(),
                "dtype": args.model.device.dtype.to_string(),
                "random_weights": args.random_weights,
                "attention": name,
                "attention_config": serde_json::to_value(plan)?,
                "context": context,
                "train_step_seconds": best,
                "train_tokens_per_second": context as f64 / best,
                "warm_up_seconds": warm_up,
            });
            progress.suspend(|| println!("{row}"));
            rows.push(row);
        }
    }
    progress.finish();
    if !args.json {
        eprintln!("\n| context | attention | train step s | tokens/s |");
        eprintln!("| --- | --- | --- | --- |");
        for row in &rows {
            eprintln!(
                "| {} | {} | {:.3} | {:.0} |",
                row["context"],
                row["attention"].as_str().unwrap_or("?"),
                row["train_step_seconds"].as_f64().unwrap_or(f64::NAN),
                row["train_tokens_per_second"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

/// Seconds of one forward, next-token loss and backward of `sequence`, to the device sync.
fn train_step<B: AutodiffBackend + DistrAttentionBackend>(
    model: &Llama<B>,
    sequence: &[u32],
    device: &B::Device,
) -> Result<f64, Box<dyn Error>> {
    let start = Instant::now();
    let tokens = model.tokens(sequence, device)?;
    let logits = model.forward(tokens.clone(), &mut model.new_cache())?;
    let gradients = language_model_loss(logits, tokens).backward();
    drop(gradients);
    B::sync(device)?;
    Ok(start.elapsed().as_secs_f64())
}

pub fn run<B: DistrAttentionBackend>(args: BenchArgs, device: &B::Device) -> Result<(), Box<dyn Error>> {
    let (mut model, text_ids, settings) = prepare::<B>(&args, device)?;
    let progress = Progress::bar(args.context.len() * settings.len() * (args.repeats + 1), "runs", args.json);
    let mut rows = Vec::new();
    for &context in &args.context {
        let prompt: Vec<u32> = text_ids.iter().copied().cycle().take(context - args.decode_tokens).collect();
        for (name, plan) in &settings {
            model.set_attention(plan)?;
            let mut best = (f64::INFINITY, f64::INFINITY);
            for repeat in 0..=args.repeats {
                let (prefill, decode) = time_once(&model, &prompt, args.decode_tokens, device)?;
                let kind = if repeat == 0 { "warm-up" } else { "timed" };
                progress.step(format!("context {context}, {name}, {kind}: prefill {prefill:.2} s"));
                if repeat > 0 {
                    best = (best.0.min(prefill), best.1.min(decode));
                }
            }
            let row = json!({
                "backend": args.model.device.backend.to_string(),
                "dtype": args.model.device.dtype.to_string(),
                "random_weights": args.random_weights,
                "attention": name,
                "attention_config": serde_json::to_value(plan)?,
                "context": context,
                "prefill_tokens": prompt.len(),
                "prefill_seconds": best.0,
                "prefill_tokens_per_second": prompt.len() as f64 / best.0,
                "decode_tokens": args.decode_tokens,
                "decode_seconds": best.1,
                "decode_tokens_per_second": args.decode_tokens as f64 / best.1,
            });
            progress.suspend(|| println!("{row}"));
            rows.push(row);
        }
    }
    progress.finish();
    if args.json {
        return Ok(());
    }
    eprintln!("\n| context | attention | prefill tokens/s | decode tokens/s |");
    eprintln!("| --- | --- | --- | --- |");
    for row in &rows {
        eprintln!(
            "| {} | {} | {:.1} | {:.1} |",
            row["context"], row["attention"].as_str().unwrap_or("?"),
            row["prefill_tokens_per_second"].as_f64().unwrap_or(f64::NAN),
            row["decode_tokens_per_second"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// Seconds of one prefill of `prompt` and of `decode_tokens` greedy decode steps after it,
/// with the model's attention plan.
fn time_once<B: DistrAttentionBackend>(
    model: &Llama<B>,
    prompt: &[u32],
    decode_tokens: usize,
    device: &B::Device,
) -> Result<(f64, f64), LlamaError> {
    let mut cache = model.new_cache();
    let start = Instant::now();
    let logits = model.forward_last(model.tokens(prompt, device)?, &mut cache)?;
    let mut next = argmax(&host_row(logits));
    let prefill = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..decode_tokens {
        let logits = model.forward_last(model.tokens(&[next], device)?, &mut cache)?;
        next = argmax(&host_row(logits));
    }
    Ok((prefill, start.elapsed().as_secs_f64()))
}
