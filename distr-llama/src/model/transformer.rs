//! One pre-norm transformer block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.

use burn::module::Module;
use burn::nn::RmsNorm;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use distr_attn::{AttentionKind, DistrAttentionBackend};

use crate::cache::LayerCache;
use crate::error::Result;
use crate::model::attention::Attention;
use crate::model::mlp::Mlp;
use crate::model::rope::RotaryAngles;

#[derive(Module, Debug)]
pub struct TransformerBlock<B: Backend> {
    pub attention_norm: RmsNorm<B>,
    pub attention: Attention<B>,
    pub mlp_norm: RmsNorm<B>,
    pub mlp: Mlp<B>,
}

impl<B: DistrAttentionBackend> TransformerBlock<B> {
    /// `[batch, seq, d_model]` -> `[batch, seq, d_model]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        angles: &RotaryAngles<B>,
        cache: &mut LayerCache<B>,
        attention: &AttentionKind,
    ) -> Result<Tensor<B, 3>> {
        let x = x.clone()
            + self
                .attention
                .forward(self.attention_norm.forward(x), angles, cache, attention)?;
        Ok(x.clone() + self.mlp.forward(self.mlp_norm.forward(x)))
    }
}
