//! `distr-llama export`

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use distr_attn::experiment::output::prepare_dir;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};

use crate::cli::ModelArgs;
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
    // Old shards beside the new file would be read with it: only a new or empty folder.
    prepare_dir(&args.out)?;
    let pretrained = args.model.load::<B>(&ModelAttentionConfig::exact(), device)?;
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
