//! A pre-norm transformer block: `x + ls1(attn(norm1(x)))`, then `x + ls2(mlp(norm2(x)))`.

use burn::module::{Module, Param};
use burn::nn::{Gelu, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::Tensor;
use distr_attn::{
    AttentionKind, DistrAttentionBackend, DistrMhaInput, DistrMultiHeadAttention,
    DistrMultiHeadAttentionConfig,
};

use super::norm::layer_norm;
use crate::VitError;

/// Learned per-channel scale of a residual branch (DINOv2's `layer_scale`, timm's `ls`).
#[derive(Module, Debug)]
pub struct LayerScale<B: DistrAttentionBackend> {
    /// `[hidden]` factors.
    pub gamma: Param<Tensor<B, 1>>,
}

impl<B: DistrAttentionBackend> LayerScale<B> {
    /// Factors of one, i.e. no scaling until weights are loaded.
    pub fn new(hidden: usize, device: &B::Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([hidden], device)),
        }
    }

    /// `[batch, tokens, hidden]` scaled channel-wise.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        x * self.gamma.val().unsqueeze::<3>()
    }
}

/// `fc2(gelu(fc1(x)))` with the exact (erf) GELU of both originals.
#[derive(Module, Debug)]
pub struct Mlp<B: DistrAttentionBackend> {
    /// `hidden -> intermediate`.
    pub fc1: Linear<B>,
    /// `intermediate -> hidden`.
    pub fc2: Linear<B>,
    /// Activation.
    pub activation: Gelu,
}

impl<B: DistrAttentionBackend> Mlp<B> {
    /// `[batch, tokens, hidden]` -> `[batch, tokens, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.fc2.forward(self.activation.forward(self.fc1.forward(x)))
    }
}

/// One transformer block whose attention is exact or DistrAttention.
#[derive(Module, Debug)]
pub struct Block<B: DistrAttentionBackend> {
    /// Norm before attention.
    pub norm1: LayerNorm<B>,
    /// Self-attention; `attention.attention` says whether it is exact or DistrAttention.
    pub attention: DistrMultiHeadAttention<B>,
    /// Scale of the attention branch (absent in the original ViT).
    pub layer_scale1: Option<LayerScale<B>>,
    /// Norm before the MLP.
    pub norm2: LayerNorm<B>,
    /// Feed-forward network.
    pub mlp: Mlp<B>,
    /// Scale of the MLP branch.
    pub layer_scale2: Option<LayerScale<B>>,
}

/// Sizes of a [`Block`], taken from the model config.
pub(crate) struct BlockShape {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub layer_norm_eps: f64,
    pub layer_scale: bool,
}

impl<B: DistrAttentionBackend> Block<B> {
    /// Builds a block with random weights and the given attention.
    pub(crate) fn new(shape: &BlockShape, attention: AttentionKind, device: &B::Device) -> Result<Self, VitError> {
        let norm = || LayerNormConfig::new(shape.hidden).with_epsilon(shape.layer_norm_eps).init(device);
        let scale = || shape.layer_scale.then(|| LayerScale::new(shape.hidden, device));
        Ok(Self {
            norm1: norm(),
            attention: DistrMultiHeadAttentionConfig::new(shape.hidden, shape.heads)
                .with_dropout(0.0)
                .with_attention(attention)
                .init(device)?,
            layer_scale1: scale(),
            norm2: norm(),
            mlp: Mlp {
                fc1: LinearConfig::new(shape.hidden, shape.intermediate).init(device),
                fc2: LinearConfig::new(shape.intermediate, shape.hidden).init(device),
                activation: Gelu::new(),
            },
            layer_scale2: scale(),
        })
    }

    /// The queries, keys and values `[batch, heads, tokens, head_dim]` this block's attention
    /// reads for `x` `[batch, tokens, hidden]`, and the weight `[hidden, hidden]` (the output
    /// projection's, times the layer scale) that carries each head's output into the residual
    /// stream: for measuring approximations head by head.
    pub fn attention_inputs(&self, x: Tensor<B, 3>) -> Result<([Tensor<B, 4>; 3], Tensor<B, 2>), VitError> {
        let heads = self.attention.project_heads(layer_norm(&self.norm1, x))?;
        let weight = self.attention.output.weight.val();
        let weight = match &self.layer_scale1 {
            Some(scale) => weight * scale.gamma.val().unsqueeze_dim(0),
            None => weight,
        };
        Ok((heads, weight))
    }

    /// `[batch, tokens, hidden]` -> `[batch, tokens, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Result<Tensor<B, 3>, VitError> {
        let attended = self
            .attention
            .forward(DistrMhaInput::self_attn(layer_norm(&self.norm1, x.clone())))?
            .context;
        let x = x + scaled(&self.layer_scale1, attended);
        let transformed = self.mlp.forward(layer_norm(&self.norm2, x.clone()));
        Ok(x + scaled(&self.layer_scale2, transformed))
    }
}

fn scaled<B: DistrAttentionBackend>(scale: &Option<LayerScale<B>>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    match scale {
        Some(scale) => scale.forward(x),
        None => x,
    }
}
