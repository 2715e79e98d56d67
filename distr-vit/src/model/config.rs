//! Configuration of a ViT / DINOv2 backbone, with presets for the models this crate loads.

use burn::config::Config;
use distr_attn::ModelAttentionConfig;

/// Configuration of a [`Vit`](super::Vit).
///
/// The field names follow Hugging Face's `Dinov2Config` where one exists. The attention of
/// each block comes from `attention` (exact by default); it can be changed after loading
/// with [`Vit::set_attention`](super::Vit::set_attention).
#[derive(Config, Debug)]
pub struct VitConfig {
    /// Side of the square image the position table was trained for; the table holds
    /// `(image_size / patch_size)^2` patch positions plus the CLS position.
    pub image_size: usize,
    /// Side of a square patch, in pixels.
    pub patch_size: usize,
    /// Token width.
    pub hidden_size: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Attention heads per block.
    pub num_heads: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// Image channels. Default: 3.
    #[config(default = 3)]
    pub num_channels: usize,
    /// Epsilon of every layer norm. Default: 1e-6 (DINOv2 and timm ViTs).
    #[config(default = 1e-6)]
    pub layer_norm_eps: f64,
    /// Whether blocks scale their residual branches by learned per-channel factors
    /// (DINOv2 does, the original ViT does not). Default: true.
    #[config(default = true)]
    pub layer_scale: bool,
    /// Classes of a linear head on the CLS token; `None` for a bare backbone. Default: None.
    pub num_classes: Option<usize>,
    /// Attention of each block. Default: exact everywhere.
    #[config(default = "ModelAttentionConfig::exact()")]
    pub attention: ModelAttentionConfig,
}

impl VitConfig {
    /// DINOv2 ViT-S/14 (Hugging Face `facebook/dinov2-small`): the backbone of
    /// `vit_s_focus.onnx`, with its 37×37 position grid.
    pub fn dinov2_small() -> Self {
        Self::new(518, 14, 384, 12, 6, 1536)
    }

    /// timm `vit_small_patch16_224`: ViT-S/16 with an ImageNet-1k head, no layer scale.
    pub fn vit_small_patch16_224() -> Self {
        Self::new(224, 16, 384, 12, 6, 1536)
            .with_layer_scale(false)
            .with_num_classes(Some(1000))
    }

    /// timm `vit_tiny_patch16_224`: ViT-Ti/16 with an ImageNet-1k head.
    pub fn vit_tiny_patch16_224() -> Self {
        Self::new(224, 16, 192, 12, 3, 768)
            .with_layer_scale(false)
            .with_num_classes(Some(1000))
    }

    /// Side of the position table's patch grid.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }
}
