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
use crate::evaluation::{score_text, windows, Perplexity};
use crate::finetune::corpus::{text_files, tokenize_files};
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
    /// Held-out text for perplexity before and after training. Repeatable.
    #[arg(long)]
    pub eval_text: Vec<PathBuf>,
    /// Score only the first N held-out tokens.
    #[arg(long, default_value_t = 4096)]
    pub eval_tokens: usize,
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
    let mut eval_ids = tokenize_files(tokenizer, &text_files(&args.eval_text)?)?;
    eval_ids.truncate(args.eval_tokens);
    // Evaluation windows hold min(eval_context, tokens) tokens.
    if eval_ids.len() > max_seq_len {
        let expected = format!("expected at most the model's {max_seq_len}");
        require(args.eval_context <= max_seq_len, "--eval-context", args.eval_context, expected)?;
    }
    eprintln!(
        "training on {} tokens ({} sequences of {}), {} steps of {} sequences; held-out {} tokens",
        train_ids.len(),
        corpus.num_sequences(),
        args.seq_len,
        args.steps,
        args.batch_size,
        eval_ids.len()
    );

    // Each evaluation reports its time: on a fresh GPU the first one includes compiling the
    // inference kernels, which can take minutes.
    let evaluate = |model: &Llama<B::InnerBackend>, label: &str| -> Result<Option<Perplexity>, Box<dyn Error>> {
        if eval_ids.len() < 2 {
            return Ok(None);
        }
        let start = Instant::now();
        let context = args.eval_context.min(eval_ids.len());
        let stride = (context / 2).max(1);
        let progress = Progress::bar(windows(eval_ids.len(), context, stride)?.len(), "held-out windows", args.json);
        let result = score_text(model, &eval_ids, context, stride, device, |_| progress.step(label.to_string()))?.perplexity();
        progress.finish();
        eprintln!("held-out perplexity {label}: {:.3} ({:.1} s)", result.perplexity, start.elapsed().as_secs_f64());
        Ok(Some(result))
    };
    let exact = ModelAttentionConfig::exact();
    let inner = pretrained.model.valid();
    let exact_before = evaluate(&inner.clone().with_attention(&exact)?, "before, exact attention")?;
    let before = if plan == exact { exact_before } else { evaluate(&inner, "before")? };
    drop(inner);

    let progress = Progress::bar(args.steps, "steps", args.json);
    let (mut steady_tokens, mut steady_seconds) = (0usize, 0.0f64);
    let (trained, report) = finetune(pretrained.model, &corpus, &config, device, |step| {
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
    })?;
    progress.finish();
    let after = evaluate(&trained, "after")?;

    let summary = json!({
        "model": args.model.model.display().to_string(),
        "backend": args.model.device.backend.to_string(),
        "dtype": args.model.device.dtype.to_string(),
        "attention": serde_json::to_value(&plan)?,
        "finetune": serde_json::from_str::<serde_json::Value>(&config.to_string())?,
        "train_tokens_available": train_ids.len(),
        "eval_tokens": eval_ids.len(),
        "eval_context": args.eval_context,
        "perplexity_exact_before": exact_before.map(|p| p.perplexity),
        "perplexity_before": before.map(|p| p.perplexity),
        "perplexity_after": after.map(|p| p.perplexity),
        "top1_before": before.map(|p| p.top1_accuracy),
        "top1_after": after.map(|p| p.top1_accuracy),
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
        let show = |p: Option<Perplexity>| p.map_or("-".to_string(), |p| format!("{:.3}", p.perplexity));
        println!("trainable parameters    {}", report.trainable_parameters);
        println!("loss                    {:.4} -> {:.4}", report.losses[0], report.losses[report.steps - 1]);
        if let Some(speed) = report.tokens_per_second {
            println!("training tokens/s       {speed:.1} (first step {:.2} s)", report.first_step_seconds);
        }
        println!("held-out perplexity     exact {} | before {} | after {}", show(exact_before), show(before), show(after));
        if let Some(out) = &args.out {
            println!("checkpoint              {}", checkpoint_file(out).display());
        }
    }
    Ok(())
}
