//! The key/value cache, kept outside the module so that one loaded model can serve many
//! sequences (and so that the module stays immutable during generation).

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Keys and values of one layer, `[batch, kv_heads, cached, head_dim]` (after RoPE).
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    entries: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
}

impl<B: Backend> LayerCache<B> {
    /// Appends this step's keys and values; returns all keys and values so far.
    pub fn append(&mut self, key: Tensor<B, 4>, value: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (key, value) = match self.entries.take() {
            None => (key, value),
            Some((cached_key, cached_value)) => {
                (Tensor::cat(vec![cached_key, key], 2), Tensor::cat(vec![cached_value, value], 2))
            }
        };
        self.entries = Some((key.clone(), value.clone()));
        (key, value)
    }
}

/// The cache of a whole model for one batch of sequences.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model of `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![LayerCache { entries: None }; num_layers], len: 0 }
    }

    /// Positions cached so far: the position of the next token.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub(crate) fn layer(&mut self, layer: usize) -> &mut LayerCache<B> {
        &mut self.layers[layer]
    }

    pub(crate) fn advance(&mut self, positions: usize) {
        self.len += positions;
    }
}
