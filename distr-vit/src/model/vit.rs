//! The ViT / DINOv2 backbone: patch tokens and a CLS token through pre-norm blocks.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::Tensor;
use distr_attn::{DistrAttentionBackend, ModelAttentionConfig};

use super::block::{Block, BlockShape};
use super::config::VitConfig;
use super::norm::layer_norm;
use super::patch_embed::PatchEmbed;
use super::position::position_embeddings;
use crate::VitError;

/// A vision transformer (ViT, DINOv2) with per-layer exact or DistrAttention.
#[derive(Module, Debug)]
pub struct Vit<B: DistrAttentionBackend> {
    /// Image to patch tokens.
    pub patch_embed: PatchEmbed<B>,
    /// `[1, 1, hidden]` learned CLS token.
    pub cls_token: Param<Tensor<B, 3>>,
    /// `[1, 1 + grid^2, hidden]` learned positions (CLS first) for the config's grid.
    pub position_embedding: Param<Tensor<B, 3>>,
    /// Transformer blocks.
    pub blocks: Vec<Block<B>>,
    /// Final layer norm.
    pub norm: LayerNorm<B>,
    /// Classification head on the normed CLS token, if the model has one.
    pub head: Option<Linear<B>>,
    /// Side of the position table's grid.
    pub grid_size: usize,
    /// Side of a patch, in pixels.
    pub patch_size: usize,
    /// Expected image channels.
    pub num_channels: usize,
}

/// Output of [`Vit::forward`].
#[derive(Debug, Clone)]
pub struct VitOutput<B: DistrAttentionBackend> {
    /// Final-norm tokens `[batch, 1 + grid_h * grid_w, hidden]`, CLS first.
    pub tokens: Tensor<B, 3>,
    /// The patch grid `[grid_h, grid_w]` of the input.
    pub grid: [usize; 2],
}

impl<B: DistrAttentionBackend> VitOutput<B> {
    /// The CLS token's features `[batch, hidden]`.
    pub fn cls(&self) -> Tensor<B, 2> {
        let [batch, _, hidden] = self.tokens.dims();
        self.tokens.clone().narrow(1, 0, 1).reshape([batch, hidden])
    }
}

impl VitConfig {
    /// Builds the model with random weights; load real ones with [`crate::import`].
    pub fn init<B: DistrAttentionBackend>(&self, device: &B::Device) -> Result<Vit<B>, VitError> {
        if self.patch_size == 0 || self.image_size < self.patch_size {
            return Err(VitError::Config {
                name: "patch_size",
                value: self.patch_size.to_string(),
                expected: format!("between 1 and image_size = {}", self.image_size),
            });
        }
        // The plan first, so that an error names the layer (the blocks would only name the
        // parameter); heads that do not divide the width are the blocks' error.
        if self.num_heads > 0 && self.hidden_size.is_multiple_of(self.num_heads) {
            self.attention.check(self.num_layers, self.num_heads, self.hidden_size / self.num_heads)?;
        }
        let shape = BlockShape {
            hidden: self.hidden_size,
            heads: self.num_heads,
            intermediate: self.intermediate_size,
            layer_norm_eps: self.layer_norm_eps,
            layer_scale: self.layer_scale,
        };
        let blocks = (0..self.num_layers)
            .map(|layer| {
                let kind = self.attention.kind_for_layer(layer, self.num_layers)?;
                Block::new(&shape, kind, device)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let grid = self.grid_size();
        Ok(Vit {
            patch_embed: PatchEmbed::new(self.num_channels, self.hidden_size, self.patch_size, device),
            cls_token: Param::from_tensor(Tensor::zeros([1, 1, self.hidden_size], device)),
            position_embedding: Param::from_tensor(Tensor::zeros([1, 1 + grid * grid, self.hidden_size], device)),
            blocks,
            norm: LayerNormConfig::new(self.hidden_size)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
            head: self
                .num_classes
                .map(|classes| LinearConfig::new(self.hidden_size, classes).init(device)),
            grid_size: grid,
            patch_size: self.patch_size,
            num_channels: self.num_channels,
        })
    }
}

impl<B: DistrAttentionBackend> Vit<B> {
    /// Checks that `plan` fits this model (one entry per layer where it has per-layer
    /// entries; every DistrAttention layer's parameters in range and its group size dividing
    /// the head dimension) without running it, so that a bad plan fails before any work
    /// rather than at the first approximate forward pass.
    pub fn check_attention(&self, plan: &ModelAttentionConfig) -> Result<(), VitError> {
        Ok(plan.check(self.blocks.len(), self.num_heads(), self.head_dim())?)
    }

    /// Head dimension of the attention layers.
    pub fn head_dim(&self) -> usize {
        self.blocks.first().map_or(0, |block| block.attention.d_k)
    }

    /// Query heads of the attention layers.
    pub fn num_heads(&self) -> usize {
        self.blocks.first().map_or(0, |block| block.attention.n_heads)
    }

    /// Switches every block's attention to what `plan` says for its layer (weights kept);
    /// a plan that does not fit (see [`Self::check_attention`]) changes nothing.
    pub fn set_attention(&mut self, plan: &ModelAttentionConfig) -> Result<(), VitError> {
        self.check_attention(plan)?;
        let num_layers = self.blocks.len();
        for (layer, block) in self.blocks.iter_mut().enumerate() {
            block.attention.attention = plan.kind_for_layer(layer, num_layers)?;
        }
        Ok(())
    }

    /// `[batch, channels, height, width]` normalised images -> final-norm tokens.
    ///
    /// Any image size of at least one patch works: the position table is resized to the
    /// input's grid (`floor(side / patch_size)` patches per side).
    pub fn forward(&self, images: Tensor<B, 4>) -> Result<VitOutput<B>, VitError> {
        let (mut x, grid) = self.embed(images)?;
        for block in &self.blocks {
            x = block.forward(x)?;
        }
        Ok(VitOutput {
            tokens: layer_norm(&self.norm, x),
            grid,
        })
    }

    /// The input of the first block: CLS and patch tokens with positions added,
    /// `[batch, 1 + grid_h * grid_w, hidden]`, and the patch grid `[grid_h, grid_w]`. Exposed
    /// so that studies can follow the activations block by block.
    pub fn embed(&self, images: Tensor<B, 4>) -> Result<(Tensor<B, 3>, [usize; 2]), VitError> {
        let dims = images.dims();
        let [batch, channels, height, width] = dims;
        if batch == 0 || channels != self.num_channels || height < self.patch_size || width < self.patch_size {
            return Err(VitError::InputShape {
                actual: dims,
                channels: self.num_channels,
                patch_size: self.patch_size,
            });
        }
        let patches = self.patch_embed.forward(images);
        let [_, hidden, grid_h, grid_w] = patches.dims();
        let patches = patches.reshape([batch, hidden, grid_h * grid_w]).swap_dims(1, 2);
        let cls = self.cls_token.val().expand([batch, 1, hidden]);
        let positions = position_embeddings(self.position_embedding.val(), self.grid_size, [grid_h, grid_w]);
        Ok((Tensor::cat(vec![cls, patches], 1) + positions, [grid_h, grid_w]))
    }

    /// Class logits `[batch, num_classes]` from the head on the CLS token.
    pub fn classify(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 2>, VitError> {
        let head = self.head.as_ref().ok_or_else(|| VitError::Config {
            name: "num_classes",
            value: "None".into(),
            expected: "a model with a classification head".into(),
        })?;
        Ok(head.forward(self.forward(images)?.cls()))
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;
    use distr_attn::{AttentionKind, DistrAttentionConfig};

    use super::*;

    type B = NdArray<f32>;

    /// Head dimension 16 (hidden 32, 2 heads), 3 layers.
    fn tiny() -> Vit<B> {
        VitConfig::new(28, 7, 32, 3, 2, 64).init(&Default::default()).unwrap()
    }

    #[test]
    fn bad_plans_fail_before_running_and_change_nothing() {
        let mut vit = tiny();
        let distr = |group_size| ModelAttentionConfig::distr(DistrAttentionConfig::new().with_group_size(group_size));
        assert!(vit.check_attention(&distr(4)).is_ok());
        for bad in [distr(3), distr(0), distr(32), ModelAttentionConfig::distr(DistrAttentionConfig::new().with_block_rows(0))] {
            let error = vit.set_attention(&bad).unwrap_err();
            assert!(matches!(error, VitError::Attention(_)), "{error}");
        }
        let wrong_layers = ModelAttentionConfig::exact().with_per_layer(vec![AttentionKind::Exact; 2]);
        assert!(vit.set_attention(&wrong_layers).is_err());
        assert!(vit.blocks.iter().all(|block| block.attention.attention == AttentionKind::Exact));
        let config = VitConfig::new(28, 7, 32, 3, 2, 64).with_attention(distr(3));
        assert!(config.init::<B>(&Default::default()).is_err());
    }

    #[test]
    fn an_empty_batch_is_an_error() {
        let images = Tensor::<B, 4>::zeros([0, 3, 28, 28], &Default::default());
        assert!(matches!(tiny().forward(images), Err(VitError::InputShape { .. })));
    }
}
