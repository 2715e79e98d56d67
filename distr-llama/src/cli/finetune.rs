//! `distr-llama finetune`

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use distr_attn::experiment::checkpoint::{checkpoint_file, save_checkpoint};
use distr_attn::experiment::output::{check_writable, prepare_file};
use distr_attn::experiment::progress::Progress;
use distr_attn::experiment::require;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use serde_json::json;

use crate::cli::{AttentionArgs, ModelArgs};
use crate::evaluation::{score_text, windows, Perplexity, TextScore};
use crate::finetune::corpus::{text_files, tokenize_files};
use crate::tokenizer::Tokenizer;
use crate::finetune::{finetune, FinetuneConfig, Loss, TokenCorpus, Trainable};
use crate::model::Llama;

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The attention the model is trained with (and evaluated with).
    #[command(flatten)]
    pub attention: AttentionArgs,
    /// Training text: files, or directories searched for .md / .txt files. Repeatable.
    #[arg(long, required = true)]
    pub train_text: Vec<PathBuf>,
    /// Held-out text for perplexity before and after training (files, or directories searched
    /// for .md / .txt files; each file is scored on its own). Repeatable.
    #[arg(long)]
    pub eval_text: Vec<PathBuf>,
    /// Score only the first N tokens of each held-out file.
    #[arg(long, default_value_t = 4096)]
    pub eval_tokens: usize,
    /// Also score the held-out text every N steps (a perplexity curve in the report); 0 for
    /// before and after only.
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Tokens per forward pass of the evaluation (windows advance by half of it).
    #[arg(long, default_value_t = 1024)]
    pub eval_context: usize,
    /// Use only the first N training tokens.
    #[arg(long)]
    pub max_train_tokens: Option<usize>,
    /// Optimizer steps.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    /// Peak learning rate (after warm-up; cosine decay to a tenth of it).
    #[arg(long, alias = "lr", default_value_t = 1e-4)]
    pub learning_rate: f64,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 10)]
    pub warmup_steps: usize,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Clip each parameter's gradient to this L2 norm; 0 turns clipping off.
    #[arg(long, default_value_t = 1.0)]
    pub grad_clip: f64,
    /// Objective: lm (next-token cross-entropy) or distill (KL to the model with exact
    /// attention; needs no labels).
    #[arg(long, value_enum, default_value = "lm")]
    pub loss: Loss,
    /// Parameters trained: all, attention (the projections only) or lora (adapters on them).
    #[arg(long, value_enum, default_value = "all")]
    pub train: Trainable,
    /// Rank of the LoRA adapters (with --train lora).
    #[arg(long, default_value_t = 8)]
    pub lora_rank: usize,
    /// LoRA scale numerator (scale = alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// Seed of the batch order.
    #[arg(long, alias = "seed", default_value_t = 0)]
    pub shuffle_seed: u64,
    /// Checkpoint to write (`.mpk`; a `.json` report is written beside it).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also print a plain progress line to stderr every N steps (for logs, where the
    /// progress bar does not show); 0 for none.
    #[arg(long, default_value_t = 0)]
    pub log_every: usize,
    /// Print one JSON object instead of a table (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

impl FinetuneArgs {
    fn config(&self) -> FinetuneConfig {
        FinetuneConfig::new()
            .with_steps(self.steps)
            .with_batch_size(self.batch_size)
            .with_seq_len(self.seq_len)
            .with_learning_rate(self.learning_rate)
            .with_warmup_steps(self.warmup_steps)
            .with_weight_decay(self.weight_decay)
            .with_grad_clip_norm((self.grad_clip > 0.0).then_some(self.grad_clip))
            .with_loss(self.loss)
            .with_train(self.train)
            .with_lora_rank(self.lora_rank)
            .with_lora_alpha(self.lora_alpha)
    }

    /// Checks the flags before anything is loaded; returns the training configuration.
    fn validate(&self) -> Result<FinetuneConfig, crate::error::LlamaError> {
        if let Some(out) = &self.out {
            prepare_file(&checkpoint_file(out))?;
            check_writable(&out.with_extension("json"))?;
        }
        require(
            self.grad_clip >= 0.0 && self.grad_clip.is_finite(),
            "--grad-clip",
            self.grad_clip,
            "expected a finite norm, or 0 for no clipping",
        )?;
        if !self.eval_text.is_empty() {
            require(self.eval_tokens >= 2, "--eval-tokens", self.eval_tokens, "expected at least 2 with --eval-text")?;
            require(self.eval_context >= 2, "--eval-context", self.eval_context, "expected at least 2")?;
        }
        require(
            self.eval_every == 0 || !self.eval_text.is_empty(),
            "--eval-every",
            self.eval_every,
            "needs --eval-text to score",
        )?;
        if let Some(max) = self.max_train_tokens {
            require(max >= self.seq_len, "--max-train-tokens", max, format!("expected at least --seq-len {}", self.seq_len))?;
        }
        let config = self.config();
        config.validate()?;
        Ok(config)
    }
}

pub fn run<B>(args: FinetuneArgs, device: &B::Device) -> Result<(), Box<dyn Error>>
where
    B: AutodiffBackend + DistrAttentionBackend,
    B::InnerBackend: DistrAttentionBackend,
{
    let config = args.validate()?;
    let plan = args.attention.plan()?;
    let pretrained = args.model.load::<B>(&plan, device)?;
    let max_seq_len = pretrained.config.max_seq_len;
    require(args.seq_len <= max_seq_len, "--seq-len", args.seq_len, format!("expected at most the model's {max_seq_len}"))?;
    let tokenizer = &pretrained.tokenizer;
    let mut train_ids = tokenize_files(tokenizer, &text_files(&args.train_text)?)?;
    if let Some(max) = args.max_train_tokens {
        train_ids.truncate(max);
    }
    let corpus = TokenCorpus::new(&train_ids, args.seq_len, args.shuffle_seed)?;
    let held_out = HeldOut::load(tokenizer, &args.eval_text, args.eval_tokens)?;
    if held_out.longest() > max_seq_len {
        let expected = format!("expected at most the model's {max_seq_len}");
        require(args.eval_context <= max_seq_len, "--eval-context", args.eval_context, expected)?;
    }
    eprintln!(
        "training on {} tokens ({} sequences of {}), {} steps of {} sequences; held-out {} tokens in {} files",
        train_ids.len(),
        corpus.num_sequences(),
        args.seq_len,
        args.steps,
        args.batch_size,
        held_out.tokens(),
        held_out.texts.len()
    );

    // Each evaluation reports its time: on a fresh GPU the first one includes compiling the
    // inference kernels, which can take minutes.
    let evaluate = |model: &Llama<B::InnerBackend>, label: &str| -> crate::error::Result<Option<HeldOutScore>> {
        if held_out.texts.is_empty() {
            return Ok(None);
        }
        let start = Instant::now();
        let score = held_out.score(model, args.eval_context, device, args.json, label)?;
        eprintln!("held-out perplexity {label}: {:.3} ({:.1} s)", score.pooled.perplexity, start.elapsed().as_secs_f64());
        Ok(Some(score))
    };
    let exact = ModelAttentionConfig::exact();
    let inner = pretrained.model.valid();
    let exact_before = evaluate(&inner.clone().with_attention(&exact)?, "before, exact attention")?;
    let before = if plan == exact { exact_before.clone() } else { evaluate(&inner, "before")? };
    drop(inner);
    let tokens_per_step = args.batch_size * args.seq_len;
    let mut curve: Vec<_> = before.iter().map(|score| score.at_step(0, 0)).collect();

    let progress = Progress::bar(args.steps, "steps", args.json);
    let (mut steady_tokens, mut steady_seconds) = (0usize, 0.0f64);
    let (trained, report) = finetune(pretrained.model, &corpus, &config, device, |step, model| {
        if step.step > 0 {
            steady_tokens += step.tokens;
            steady_seconds += step.seconds;
        }
        let speed = if steady_seconds > 0.0 { steady_tokens as f64 / steady_seconds } else { step.tokens as f64 / step.seconds };
        let message = format!("loss {:.4}, {:.0} tokens/s, lr {:.2e}", step.loss, speed, step.learning_rate);
        if args.log_every > 0 && (step.step + 1) % args.log_every == 0 {
            progress.println(&format!("step {}/{}: {message} ({:.2} s)", step.step + 1, args.steps, step.seconds));
        }
        progress.step(message);
        let done = step.step + 1;
        if args.eval_every > 0 && done % args.eval_every == 0 && done < args.steps {
            if let Some(score) = evaluate(&model.valid(), &format!("after step {done}"))? {
                curve.push(score.at_step(done, done * tokens_per_step));
            }
        }
        Ok(())
    })?;
    progress.finish();
    let after = evaluate(&trained, "after")?;
    curve.extend(after.iter().map(|score| score.at_step(args.steps, args.steps * tokens_per_step)));

    let summary = json!({
        "model": args.model.model.display().to_string(),
        "backend": args.model.device.backend.to_string(),
        "dtype": args.model.device.dtype.to_string(),
        "attention": serde_json::to_value(&plan)?,
        "finetune": serde_json::from_str::<serde_json::Value>(&config.to_string())?,
        "train_tokens_available": train_ids.len(),
        "eval_tokens": held_out.tokens(),
        "eval_texts": held_out.texts.iter().map(|text| &text.name).collect::<Vec<_>>(),
        "eval_context": args.eval_context,
        "perplexity_exact_before": exact_before.as_ref().map(|s| s.pooled.perplexity),
        "perplexity_before": before.as_ref().map(|s| s.pooled.perplexity),
        "perplexity_after": after.as_ref().map(|s| s.pooled.perplexity),
        "top1_before": before.as_ref().map(|s| s.pooled.top1_accuracy),
        "top1_after": after.as_ref().map(|s| s.pooled.top1_accuracy),
        "curve": curve,
        "first_loss": report.losses.first(),
        "last_loss": report.losses.last(),
        "report": report,
        "checkpoint": args.out.as_ref().map(|out| checkpoint_file(out).display().to_string()),
    });
    if let Some(out) = &args.out {
        save_checkpoint(trained, out)?;
        let sidecar = out.with_extension("json");
        std::fs::write(&sidecar, serde_json::to_string_pretty(&summary)?)
            .map_err(crate::error::LlamaError::io(&sidecar))?;
    }
    if args.json {
        println!("{summary}");
    } else {
        let show = |s: &Option<HeldOutScore>| s.as_ref().map_or("-".to_string(), |s| format!("{:.3}", s.pooled.perplexity));
        println!("trainable parameters    {}", report.trainable_parameters);
        println!("loss                    {:.4} -> {:.4}", report.losses[0], report.losses[report.steps - 1]);
        if let Some(speed) = report.tokens_per_second {
            println!("training tokens/s       {speed:.1} (first step {:.2} s)", report.first_step_seconds);
        }
        println!("held-out perplexity     exact {} | before {} | after {}", show(&exact_before), show(&before), show(&after));
        if let Some(out) = &args.out {
            println!("checkpoint              {}", checkpoint_file(out).display());
        }
    }
    Ok(())
}

/// The held-out files, each cut to its first `--eval-tokens` tokens and scored on its own.
struct HeldOut {
    texts: Vec<HeldOutText>,
}

struct HeldOutText {
    name: String,
    ids: Vec<u32>,
}

impl HeldOut {
    fn load(tokenizer: &dyn Tokenizer, paths: &[PathBuf], tokens: usize) -> crate::error::Result<Self> {
        let mut texts = Vec::new();
        for file in text_files(paths)? {
            let mut ids = tokenize_files(tokenizer, std::slice::from_ref(&file))?;
            ids.truncate(tokens);
            if ids.len() < 2 {
                return Err(crate::error::LlamaError::TooFewTokens { what: format!("held-out file {}", file.display()), tokens: ids.len(), needed: 2 });
            }
            texts.push(HeldOutText { name: file.display().to_string(), ids });
        }
        Ok(Self { texts })
    }

    fn tokens(&self) -> usize {
        self.texts.iter().map(|text| text.ids.len()).sum()
    }

    fn longest(&self) -> usize {
        self.texts.iter().map(|text| text.ids.len()).max().unwrap_or(0)
    }

    /// Perplexity of each file (windows of `context` tokens advancing by half of it) and of
    /// all of them together.
    fn score<B: DistrAttentionBackend>(
        &self,
        model: &Llama<B>,
        context: usize,
        device: &B::Device,
        quiet: bool,
        label: &str,
    ) -> crate::error::Result<HeldOutScore> {
        let window_size = |text: &HeldOutText| context.min(text.ids.len());
        let mut total_windows = 0;
        for text in &self.texts {
            total_windows += windows(text.ids.len(), window_size(text), (window_size(text) / 2).max(1))?.len();
        }
        let progress = Progress::bar(total_windows, "held-out windows", quiet);
        let mut pooled = TextScore::default();
        let mut by_text = Vec::with_capacity(self.texts.len());
        for text in &self.texts {
            let context = window_size(text);
            let score = score_text(model, &text.ids, context, (context / 2).max(1), device, |_| progress.step(label.to_string()))?;
            pooled.negative_log_likelihood += score.negative_log_likelihood;
            pooled.correct += score.correct;
            pooled.predictions.extend_from_slice(&score.predictions);
            by_text.push((text.name.clone(), score.perplexity()));
        }
        progress.finish();
        Ok(HeldOutScore { pooled: pooled.perplexity(), by_text })
    }
}

/// A held-out evaluation: all files together, and each file.
#[derive(Clone)]
struct HeldOutScore {
    pooled: Perplexity,
    by_text: Vec<(String, Perplexity)>,
}

impl HeldOutScore {
    /// A point of the report's perplexity curve.
    fn at_step(&self, step: usize, tokens: usize) -> serde_json::Value {
        let by_text: serde_json::Map<_, _> =
            self.by_text.iter().map(|(name, score)| (name.clone(), json!(score.perplexity))).collect();
        json!({
            "step": step,
            "train_tokens": tokens,
            "perplexity": self.pooled.perplexity,
            "top1": self.pooled.top1_accuracy,
            "perplexity_by_text": by_text,
        })
    }
}
