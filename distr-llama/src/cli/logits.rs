//! `distr-llama logits`

use std::error::Error;
use std::path::PathBuf;

use clap::Args;
use distr_attn::experiment::npy;
use distr_attn::experiment::output::check_writable;
use distr_attn::experiment::progress::announce;
use distr_attn::DistrAttentionBackend;

use crate::cli::{AttentionArgs, ModelArgs};
use crate::tokenizer::Tokenizer;

#[derive(Args, Debug)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub attention: AttentionArgs,
    /// Prompt text.
    #[arg(long)]
    pub prompt: String,
    /// Output .npy file: float32 `[seq, vocab]`.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run<B: DistrAttentionBackend>(args: LogitsArgs, device: &B::Device) -> Result<(), Box<dyn Error>> {
    let plan = args.attention.plan()?;
    check_writable(&args.out)?;
    let pretrained = args.model.load::<B>(&plan, device)?;
    let ids = pretrained.tokenizer.encode(&args.prompt)?;
    let model = &pretrained.model;
    let spinner = announce(&format!("forward pass over {} tokens", ids.len()), args.model.device.backend, false);
    let logits = model.forward(model.tokens(&ids, device)?, &mut model.new_cache())?;
    let [_, seq, vocab] = logits.dims();
    let values = logits.into_data().convert::<f32>().into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    spinner.finish();
    npy::write_f32(&args.out, &values, &[seq, vocab])?;
    eprintln!("wrote logits [{seq}, {vocab}] of token ids {ids:?} to {}", args.out.display());
    Ok(())
}
