//! Grouped-query self-attention whose score product is DistrAttention or exact, per call.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use distr_attn::{distr_attention, DistrAttentionBackend, DistrAttentionConfig};

use crate::cache::LayerCache;
use crate::error::Result;
use crate::model::rope::RotaryEmbedding;

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
}

impl<B: DistrAttentionBackend> Attention<B> {
    /// `x` `[batch, seq, d_model]` at positions `cache.len() ..`; the keys and values are
    /// appended to `cache`. `attention` must be causal: the new queries are the last
    /// positions of the cached keys.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RotaryEmbedding<B>,
        start: usize,
        cache: &mut LayerCache<B>,
        attention: &DistrAttentionConfig,
    ) -> Result<Tensor<B, 3>> {
        let [batch, seq, _] = x.dims();
        let heads = |projection: &Linear<B>, count: usize| {
            projection
                .forward(x.clone())
                .reshape([batch, seq, count, self.head_dim])
                .swap_dims(1, 2)
        };
        let query = rope.apply(heads(&self.query, self.num_heads), start);
        let key = rope.apply(heads(&self.key, self.num_kv_heads), start);
        let value = heads(&self.value, self.num_kv_heads);
        let (key, value) = cache.append(key, value);

        let context = distr_attention(query, key, value, None, attention)?;
        let context = context.swap_dims(1, 2).reshape([batch, seq, self.num_heads * self.head_dim]);
        Ok(self.output.forward(context))
    }
}
