//! The model options every command takes; the attention options are the shared
//! [`AttentionArgs`](distr_attn::experiment::args::AttentionArgs).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use distr_attn::experiment::args::DeviceArgs;
use distr_attn::experiment::checkpoint::{checkpoint_file, load_checkpoint};
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};

use crate::error::Result;
use crate::pretrained::{load_pretrained, Pretrained};

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A `.gguf` file or a Hugging Face checkpoint directory (config.json, *.safetensors,
    /// tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Weights saved by `finetune --out` (the `.mpk` file, extension optional), replacing
    /// those of --model, which still gives the configuration and tokenizer.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

impl ModelArgs {
    /// Loads the model with the attention of `plan` (checked against it), telling stderr what
    /// was loaded and how long it took.
    pub fn load<B: DistrAttentionBackend>(&self, plan: &ModelAttentionConfig, device: &B::Device) -> Result<Pretrained<B>> {
        let start = Instant::now();
        let mut pretrained = load_pretrained::<B>(&self.model, device)?;
        if let Some(checkpoint) = &self.checkpoint {
            pretrained.model = load_checkpoint(pretrained.model, checkpoint, device)?;
            eprintln!("weights from checkpoint {}", checkpoint_file(checkpoint).display());
        }
        pretrained.model.set_attention(plan)?;
        let config = &pretrained.config;
        eprintln!(
            "loaded {} on {} ({}): {} layers, d_model {}, {} heads / {} kv heads, vocab {}, {:.1}M parameters ({:.1} s)",
            self.model.display(),
            self.device.backend,
            self.device.dtype,
            config.num_layers,
            config.d_model,
            config.num_heads,
            config.num_kv_heads,
            config.vocab_size,
            config.num_parameters() as f64 / 1e6,
            start.elapsed().as_secs_f64()
        );
        Ok(pretrained)
    }

}
