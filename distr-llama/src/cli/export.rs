//! `distr-llama export`

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use distr_attn::DistrAttentionBackend;

use crate::cli::ModelArgs;
use crate::error::LlamaError;
use crate::pretrained::ExportDtype;

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Directory to write: created, or an empty one.
    #[arg(long)]
    pub out: PathBuf,
    /// Float type of the written weights (f32 is lossless).
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: ExportDtype,
}

pub fn run<B: DistrAttentionBackend>(args: ExportArgs, device: &B::Device) -> Result<(), Box<dyn Error>> {
    if args.out.exists() {
        // Old shards beside the new file would be read with it.
        let mut entries = std::fs::read_dir(&args.out).map_err(LlamaError::io(&args.out))?;
        if entries.next().is_some() {
            return Err(format!("`{}` is not empty: --out must be a new or empty directory", args.out.display()).into());
        }
    }
    let pretrained = args.model.load::<B>(device)?;
    let start = Instant::now();
    pretrained.export(&args.out, args.dtype)?;
    eprintln!(
        "wrote {} (config.json, model.safetensors in {}, tokenizer.json, tokenizer_config.json) in {:.1} s",
        args.out.display(),
        args.dtype.torch_name(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
