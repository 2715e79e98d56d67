//! The `distr-llama` command line: `generate`, `logits`, `perplexity`, `bench`, `finetune`,
//! `calibrate` and `export`, each on the backend named by `--backend` and (but `export`) with
//! the attention chosen by the shared options. Numeric flags are range-checked before the
//! model is loaded, and against it after.

pub mod args;
mod bench;
mod calibrate;
mod export;
mod finetune;
mod generate;
mod logits;
mod perplexity;

use std::error::Error;
use std::ffi::OsString;
use std::path::PathBuf;

use burn::backend::Autodiff;
use clap::{Parser, Subcommand};
use distr_attn::backends::BackendRunner;
use distr_attn::experiment::command_line::parse_command_line;
use distr_attn::experiment::kernel_cache::use_kernel_cache;
use distr_attn::DistrAttentionBackend;

pub use args::ModelArgs;
pub use distr_attn::experiment::args::AttentionArgs;

#[derive(Parser, Debug)]
#[command(name = "distr-llama", version, about = "A pretrained Llama (GGUF or Hugging Face directory) with DistrAttention")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Keep compiled kernels and autotune decisions in this directory between runs (one
    /// subdirectory per build of this program). On CUDA a run without it compiles and tunes
    /// its kernels again, minutes before a first training step.
    #[arg(long, global = true, value_name = "DIR")]
    pub kernel_cache: Option<PathBuf>,
}

impl Cli {
    /// Parses a command line (program name first), negative numbers included.
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        parse_command_line(args, |command| command)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate text after a prompt (or a chat message), streaming tokens, with prefill and
    /// decode speed.
    Generate(generate::GenerateArgs),
    /// Write the logits of every prompt position as float32 `[seq, vocab]` .npy.
    Logits(logits::LogitsArgs),
    /// Perplexity and next-token top-1 accuracy over a text file (optionally agreement with
    /// exact attention).
    Perplexity(perplexity::PerplexityArgs),
    /// Prefill and decode tokens/s at several context lengths, exact vs DistrAttention.
    Bench(bench::BenchArgs),
    /// Fine-tune with the chosen attention in place (AdamW, warm-up + cosine, clipping; all
    /// parameters, attention projections only, or LoRA adapters; lm or distillation loss),
    /// report held-out perplexity before and after, and save a checkpoint.
    Finetune(finetune::FinetuneArgs),
    /// Choose per layer exact attention or DistrAttention with the largest group size that
    /// keeps perplexity within a budget; write the result as a --config file.
    Calibrate(calibrate::CalibrateArgs),
    /// Write the model (with --checkpoint, the fine-tuned one) as a Hugging Face checkpoint
    /// directory: config.json, model.safetensors, tokenizer.json, tokenizer_config.json.
    Export(export::ExportArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), Box<dyn Error>> {
    if let Some(dir) = &cli.kernel_cache {
        eprintln!("kernel cache {}", use_kernel_cache(dir)?.display());
    }
    let device = match &cli.command {
        Command::Generate(args) => args.model.device,
        Command::Logits(args) => args.model.device,
        Command::Perplexity(args) => args.model.device,
        Command::Bench(args) => args.model.device,
        Command::Calibrate(args) => args.model.device,
        Command::Finetune(args) => args.model.device,
        Command::Export(args) => args.model_args().device,
    };
    device.run(CommandRunner(cli.command))?
}

/// Every command on the chosen backend; `finetune` on it wrapped in `Autodiff`.
struct CommandRunner(Command);

impl BackendRunner for CommandRunner {
    type Output = Result<(), Box<dyn Error>>;

    fn run<B: DistrAttentionBackend>(self, device: B::Device) -> Self::Output {
        match self.0 {
            Command::Generate(args) => generate::run::<B>(args, &device),
            Command::Logits(args) => logits::run::<B>(args, &device),
            Command::Perplexity(args) => perplexity::run::<B>(args, &device),
            Command::Bench(args) if args.train => bench::run_train::<Autodiff<B>>(args, &device),
            Command::Bench(args) => bench::run::<B>(args, &device),
            Command::Calibrate(args) => calibrate::run::<B>(args, &device),
            Command::Export(args) => export::run::<B>(args, &device),
            Command::Finetune(args) => finetune::run::<Autodiff<B>>(args, &device),
        }
    }
}
