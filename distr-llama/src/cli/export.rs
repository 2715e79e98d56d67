//! `distr-llama export`

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use distr_attn::backends::{BackendKind, Precision};
use distr_attn::experiment::args::DeviceArgs;
use distr_attn::experiment::output::prepare_dir;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};

use crate::cli::ModelArgs;
use crate::pretrained::ExportDtype;

/// `export`'s options: those of [`ModelArgs`] but `--dtype`, which here is the float type
/// written (the model itself is read in f32, lossless for every source).
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A `.gguf` file or a Hugging Face checkpoint directory (config.json, *.safetensors,
    /// tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Backend: flex (CPU), wgpu, cuda or ndarray (each but flex needs its cargo feature).
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
    /// Weights saved by `finetune --out` (the `.mpk` file, extension optional), replacing
    /// those of --model, which still gives the configuration and tokenizer.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Directory to write: created, or an empty one.
    #[arg(long)]
    pub out: PathBuf,
    /// Float type of the written weights (f32 is lossless).
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: ExportDtype,
}

impl ExportArgs {
    /// Where and how the model is read: on --backend, in f32.
    pub fn model_args(&self) -> ModelArgs {
        ModelArgs {
            model: self.model.clone(),
            device: DeviceArgs { backend: self.backend, dtype: Precision::F32 },
            checkpoint: self.checkpoint.clone(),
        }
    }
}

pub fn run<B: DistrAttentionBackend>(args: ExportArgs, device: &B::Device) -> Result<(), Box<dyn Error>> {
    // Old shards beside the new file would be read with it: only a new or empty folder.
    prepare_dir(&args.out)?;
    let pretrained = args.model_args().load::<B>(&ModelAttentionConfig::exact(), device)?;
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
