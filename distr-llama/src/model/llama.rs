//! The Llama decoder: token embedding, blocks, final RMSNorm, output head (tied or not).

use burn::module::Module;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use distr_attn::{AttentionKind, DistrAttentionBackend, ModelAttentionConfig};

use crate::cache::KvCache;
use crate::error::{LlamaError, Result};
use crate::model::config::LlamaConfig;
use crate::model::lora::{AttentionAdapters, LoraConfig};
use crate::model::rope::RotaryEmbedding;
use crate::model::transformer::TransformerBlock;

/// One layer's attention inputs in an exact pass ([`Llama::attention_activations`]).
#[derive(Debug, Clone)]
pub struct LayerActivations<B: Backend> {
    /// `[batch, num_heads, seq, head_dim]`, rotary embedding applied.
    pub query: Tensor<B, 4>,
    /// `[batch, num_kv_heads, seq, head_dim]`, rotary embedding applied.
    pub key: Tensor<B, 4>,
    /// `[batch, num_kv_heads, seq, head_dim]`
    pub value: Tensor<B, 4>,
    /// The residual stream entering the layer, `[batch, seq, d_model]`: what the attention's
    /// output is added to.
    pub residual: Tensor<B, 3>,
}

#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// `[vocab_size, d_model]`
    pub embedding: Embedding<B>,
    pub layers: Vec<TransformerBlock<B>>,
    pub norm: RmsNorm<B>,
    /// `[d_model, vocab_size]`; `None` when the head is the transposed embedding.
    pub output: Option<Linear<B>>,
    pub rope: RotaryEmbedding<B>,
    pub vocab_size: usize,
    pub max_seq_len: usize,
    /// Which attention each layer runs: exact after loading, changed with
    /// [`Llama::set_attention`], which checks it against the model.
    attention: ModelAttentionConfig,
}

impl<B: Backend> Llama<B> {
    /// Assembles a model with exact attention in every layer.
    pub fn new(
        embedding: Embedding<B>,
        layers: Vec<TransformerBlock<B>>,
        norm: RmsNorm<B>,
        output: Option<Linear<B>>,
        rope: RotaryEmbedding<B>,
        max_seq_len: usize,
    ) -> Self {
        let vocab_size = embedding.weight.dims()[0];
        Self { embedding, layers, norm, output, rope, vocab_size, max_seq_len, attention: ModelAttentionConfig::exact() }
    }

    /// The attention plan every forward pass follows.
    pub fn attention(&self) -> &ModelAttentionConfig {
        &self.attention
    }

    /// Head dimension of the attention layers.
    pub fn head_dim(&self) -> usize {
        self.layers.first().map_or(0, |layer| layer.attention.head_dim)
    }

    /// Query heads of the attention layers.
    pub fn num_heads(&self) -> usize {
        self.layers.first().map_or(0, |layer| layer.attention.num_heads)
    }

    /// Query and key/value heads of the attention layers: what the rotary embedding rotates.
    fn head_counts(&self) -> [usize; 2] {
        self.layers.first().map_or([0, 0], |layer| [layer.attention.num_heads, layer.attention.num_kv_heads])
    }

    /// Switches the attention of every layer to what `plan` says (weights kept). The plan is
    /// checked first ([`ModelAttentionConfig::check`]): one that does not fit changes nothing.
    pub fn set_attention(&mut self, plan: &ModelAttentionConfig) -> Result<()> {
        plan.check(self.layers.len(), self.num_heads(), self.head_dim())?;
        self.attention = plan.clone();
        Ok(())
    }

    /// This model with the attention of `plan` ([`Self::set_attention`]).
    pub fn with_attention(mut self, plan: &ModelAttentionConfig) -> Result<Self> {
        self.set_attention(plan)?;
        Ok(self)
    }
}

impl<B: DistrAttentionBackend> Llama<B> {
    /// An empty KV cache for this model.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.layers.len(), self.max_seq_len)
    }

    /// Final hidden states `[batch, seq, d_model]` of `tokens` `[batch, seq]`, which continue
    /// the sequence in `cache` (empty cache: a fresh sequence). Layer `i` attends with
    /// `self.attention().kind_for_call(i, layers, seq)`, made causal: decode steps are exact
    /// unless the plan says `distr_decode`.
    pub fn hidden_states(&self, tokens: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Result<Tensor<B, 3>> {
        let [_, seq] = tokens.dims();
        if seq == 0 {
            return Err(LlamaError::Empty("no tokens to run"));
        }
        let start = cache.len();
        if start + seq > self.max_seq_len {
            return Err(LlamaError::Context { tokens: start + seq, max: self.max_seq_len });
        }
        let num_layers = self.layers.len();
        let angles = self.rope.angles(start, seq, &self.head_counts());
        let mut x = self.embedding.forward(tokens);
        for (index, layer) in self.layers.iter().enumerate() {
            let kind = self.attention.kind_for_call(index, num_layers, seq)?.with_causal(true);
            x = layer.forward(x, &angles, cache.layer(index), &kind)?;
        }
        cache.advance(seq);
        Ok(self.norm.forward(x))
    }

    /// What each layer's attention reads when `tokens` `[batch, seq]` run as a fresh sequence
    /// with exact attention in every layer: for measuring approximations on the model's own
    /// activations (per-head calibration).
    pub fn attention_activations(&self, tokens: Tensor<B, 2, Int>) -> Result<Vec<LayerActivations<B>>> {
        let exact = AttentionKind::Exact.with_causal(true);
        let mut cache = self.new_cache();
        let angles = self.rope.angles(0, tokens.dims()[1], &self.head_counts());
        let mut x = self.embedding.forward(tokens);
        let mut activations = Vec::with_capacity(self.layers.len());
        for (index, layer) in self.layers.iter().enumerate() {
            let [query, key, value] = layer.attention.project_heads(layer.attention_norm.forward(x.clone()), &angles);
            activations.push(LayerActivations { query, key, value, residual: x.clone() });
            x = layer.forward(x, &angles, cache.layer(index), &exact)?;
        }
        Ok(activations)
    }

    /// Logits `[batch, seq, vocab_size]` of every position.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Result<Tensor<B, 3>> {
        Ok(self.head(self.hidden_states(tokens, cache)?))
    }

    /// Logits `[batch, vocab_size]` of the last position only: what generation needs, without
    /// projecting every prompt position onto the vocabulary.
    pub fn forward_last(&self, tokens: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Result<Tensor<B, 2>> {
        let hidden = self.hidden_states(tokens, cache)?;
        let [batch, seq, _] = hidden.dims();
        let last = hidden.narrow(1, seq - 1, 1);
        Ok(self.head(last).reshape([batch, self.vocab_size]))
    }

    /// `[batch, seq, d_model]` -> `[batch, seq, vocab_size]`
    pub fn head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.output {
            Some(output) => output.forward(hidden),
            // A rank-2 product against the transposed view: giving the view a batch axis
            // (`unsqueeze`) makes strided backends copy the whole embedding on every call
            // (113 MB for SmolLM2, most of a CPU decode step).
            None => {
                let [batch, seq, d_model] = hidden.dims();
                hidden
                    .reshape([batch * seq, d_model])
                    .matmul(self.embedding.weight.val().transpose())
                    .reshape([batch, seq, self.vocab_size])
            }
        }
    }

    /// Token ids `[batch, seq]` on this model's device, checked against the vocabulary.
    pub fn tokens(&self, ids: &[u32], device: &B::Device) -> Result<Tensor<B, 2, Int>> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(LlamaError::TokenId { id, vocab_size: self.vocab_size });
        }
        let ids: Vec<i64> = ids.iter().map(|&id| id.into()).collect();
        let len = ids.len();
        Ok(Tensor::<B, 1, Int>::from_data(burn::tensor::TensorData::new(ids, [len]), device).unsqueeze())
    }
}

impl<B: Backend> Llama<B> {
    /// This model with fresh LoRA adapters (see [`LoraConfig`]) on every attention projection.
    pub fn with_adapters(mut self, config: &LoraConfig, device: &B::Device) -> Self {
        for layer in &mut self.layers {
            let attention = &mut layer.attention;
            let heads = attention.num_heads * attention.head_dim;
            let kv = attention.num_kv_heads * attention.head_dim;
            let d_model = attention.query.weight.dims()[0];
            attention.adapters = Some(AttentionAdapters {
                query: config.init(d_model, heads, device),
                key: config.init(d_model, kv, device),
                value: config.init(d_model, kv, device),
                output: config.init(heads, d_model, device),
            });
        }
        self
    }

    /// This model with every adapter folded into its projection and removed: the same
    /// function, in the plain structure that checkpoints and the loaders use.
    pub fn merge_adapters(mut self) -> Self {
        for layer in &mut self.layers {
            let attention = &mut layer.attention;
            if let Some(adapters) = attention.adapters.take() {
                attention.query = adapters.query.merge_into(attention.query.clone());
                attention.key = adapters.key.merge_into(attention.key.clone());
                attention.value = adapters.value.merge_into(attention.value.clone());
                attention.output = adapters.output.merge_into(attention.output.clone());
            }
        }
        self
    }
}

impl LlamaConfig {
    /// Parameter count of a model with this configuration.
    pub fn num_parameters(&self) -> usize {
        let attention = self.d_model * self.head_dim * (2 * self.num_heads + 2 * self.num_kv_heads);
        let block = attention + 3 * self.d_model * self.d_ff + 2 * self.d_model;
        let head = if self.tie_embeddings { 0 } else { self.vocab_size * self.d_model };
        self.vocab_size * self.d_model + self.num_layers * block + self.d_model + head
    }
}
