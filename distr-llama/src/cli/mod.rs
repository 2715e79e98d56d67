//! The `distr-llama` command line: `generate`, `logits`, `perplexity` and `bench`, each on
//! the backend named by `--backend` and with the attention chosen by the shared options.

pub mod args;
mod bench;
mod generate;
mod logits;
mod perplexity;

use std::error::Error;

use clap::{Parser, Subcommand};
use distr_attn::backends::BackendRunner;
use distr_attn::DistrAttentionBackend;

pub use args::{AttentionArgs, ModelArgs};

#[derive(Parser, Debug)]
#[command(name = "distr-llama", version, about = "A pretrained Llama (GGUF or Hugging Face directory) with DistrAttention")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), Box<dyn Error>> {
    let backend = match &cli.command {
        Command::Generate(args) => args.model.backend,
        Command::Logits(args) => args.model.backend,
        Command::Perplexity(args) => args.model.backend,
        Command::Bench(args) => args.model.backend,
    };
    backend.run(CommandRunner(cli.command))?
}

struct CommandRunner(Command);

impl BackendRunner for CommandRunner {
    type Output = Result<(), Box<dyn Error>>;

    fn run<B: DistrAttentionBackend>(self, device: B::Device) -> Self::Output {
        match self.0 {
            Command::Generate(args) => generate::run::<B>(args, &device),
            Command::Logits(args) => logits::run::<B>(args, &device),
            Command::Perplexity(args) => perplexity::run::<B>(args, &device),
            Command::Bench(args) => bench::run::<B>(args, &device),
        }
    }
}
