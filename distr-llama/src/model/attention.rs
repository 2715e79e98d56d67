//! Grouped-query self-attention whose score product is DistrAttention or exact, per call.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use distr_attn::{AttentionKind, DistrAttentionBackend};

use crate::cache::LayerCache;
use crate::error::Result;
use crate::model::lora::{AttentionAdapters, LoraAdapter};
use crate::model::rope::RotaryAngles;

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `[d_model, num_heads * head_dim]`
    pub query: Linear<B>,
    /// `[d_model, num_kv_heads * head_dim]`
    pub key: Linear<B>,
    /// `[d_model, num_kv_heads * head_dim]`
    pub value: Linear<B>,
    /// `[num_heads * head_dim, d_model]`
    pub output: Linear<B>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// LoRA updates of the four projections, while fine-tuning with adapters; `None` in a
    /// loaded or merged model.
    pub adapters: Option<AttentionAdapters<B>>,
}

impl<B: DistrAttentionBackend> Attention<B> {
    /// `x` `[batch, seq, d_model]` at positions `cache.len() ..`; the keys and values are
    /// appended to `cache`. `attention` must be causal: the new queries are the last
    /// positions of the cached keys.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        angles: &RotaryAngles<B>,
        cache: &mut LayerCache<B>,
        attention: &AttentionKind,
    ) -> Result<Tensor<B, 3>> {
        let [batch, seq, _] = x.dims();
        let [query, key, value] = self.project_heads(x, angles);
        let (key, value) = cache.append(key, value);

        let context = attention.attend(query, key, value, None)?;
        let context = context.swap_dims(1, 2).reshape([batch, seq, self.num_heads * self.head_dim]);
        Ok(project(&self.output, self.adapters.as_ref().map(|a| &a.output), context))
    }

    /// The queries `[batch, num_heads, seq, head_dim]`, keys and values (`num_kv_heads`) of
    /// `x` `[batch, seq, d_model]` at positions `start ..`, rotary embedding applied: what
    /// `forward` hands the op (with the cached keys and values before these).
    pub fn project_heads(&self, x: Tensor<B, 3>, angles: &RotaryAngles<B>) -> [Tensor<B, 4>; 3] {
        let [batch, seq, _] = x.dims();
        let adapters = self.adapters.as_ref();
        // `[batch, seq, heads, head_dim]`, rotated (queries, keys) while still contiguous.
        let heads = |projection: &Linear<B>, adapter: Option<&LoraAdapter<B>>, count: usize| {
            project(projection, adapter, x.clone()).reshape([batch, seq, count, self.head_dim])
        };
        let query = angles.rotate(heads(&self.query, adapters.map(|a| &a.query), self.num_heads));
        let key = angles.rotate(heads(&self.key, adapters.map(|a| &a.key), self.num_kv_heads));
        let value = heads(&self.value, adapters.map(|a| &a.value), self.num_kv_heads);
        [query, key, value].map(|heads| heads.swap_dims(1, 2))
    }
}

/// `projection(x)`, plus the adapter's update when there is one.
fn project<B: Backend>(projection: &Linear<B>, adapter: Option<&LoraAdapter<B>>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    match adapter {
        Some(adapter) => projection.forward(x.clone()) + adapter.forward(x),
        None => projection.forward(x),
    }
}
