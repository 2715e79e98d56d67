//! The key/value cache, kept outside the module so that one loaded model can serve many
//! sequences (and so that the module stays immutable during generation).

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Keys and values of one layer, `[batch, kv_heads, capacity, head_dim]` (after RoPE), of
/// which the first `len` positions are written.
///
/// Written in place: appending a step copies only the step, where concatenating would copy
/// the whole cache (per layer and step: quadratic in the generated length). The capacity
/// grows by doubling up to the model's context limit, so a decode step mostly sees the same
/// buffer shapes as the one before.
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    buffers: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    len: usize,
    max_len: usize,
}

/// The first capacity of a layer's buffers (positions), unless the context limit is smaller.
const MIN_CAPACITY: usize = 256;

impl<B: Backend> LayerCache<B> {
    fn new(max_len: usize) -> Self {
        Self { buffers: None, len: 0, max_len }
    }

    /// Writes `key` and `value` `[batch, kv_heads, seq, head_dim]` after the cached positions
    /// and returns every cached position's keys and values (views of the buffers).
    pub fn append(&mut self, key: Tensor<B, 4>, value: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [_, _, seq, _] = key.dims();
        let end = self.len + seq;
        let (keys, values) = match self.buffers.take() {
            Some((keys, values)) if keys.dims()[2] >= end => (keys, values),
            buffers => {
                let capacity = end.next_power_of_two().max(MIN_CAPACITY).min(self.max_len.max(end));
                let grown = |tensor: &Tensor<B, 4>, old: Option<Tensor<B, 4>>| {
                    let [batch, heads, _, dim] = tensor.dims();
                    let buffer = Tensor::zeros([batch, heads, capacity, dim], &tensor.device());
                    match old {
                        Some(old) => buffer.slice_assign([0..batch, 0..heads, 0..self.len, 0..dim], old.narrow(2, 0, self.len)),
                        None => buffer,
                    }
                };
                let (old_keys, old_values) = buffers.unzip();
                (grown(&key, old_keys), grown(&value, old_values))
            }
        };
        let write = |buffer: Tensor<B, 4>, step: Tensor<B, 4>| {
            let [batch, heads, _, dim] = step.dims();
            buffer.slice_assign([0..batch, 0..heads, self.len..end, 0..dim], step)
        };
        let (keys, values) = (write(keys, key), write(values, value));
        self.len = end;
        let cached = (keys.clone().narrow(2, 0, end), values.clone().narrow(2, 0, end));
        self.buffers = Some((keys, values));
        cached
    }
}

/// The cache of a whole model for one batch of sequences.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache of `num_layers` layers for sequences of at most `max_len` positions.
    pub fn new(num_layers: usize, max_len: usize) -> Self {
        Self { layers: vec![LayerCache::new(max_len); num_layers], len: 0 }
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

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};
    use distr_attn::backends::FlexBackend as B;

    use super::*;

    fn random(seq: usize) -> Tensor<B, 4> {
        Tensor::random([2, 3, seq, 4], Distribution::Default, &Default::default())
    }

    /// Steps of 1, a prompt past the first capacity and a step that crosses a doubling give the
    /// concatenation of everything appended; a clone taken midway keeps its own positions.
    #[test]
    fn appends_in_place_as_a_concatenation_would() {
        let mut cache = LayerCache::<B>::new(1024);
        let steps = [300, 1, 1, 210, 1, 3];
        let (mut all_keys, mut all_values) = (Vec::new(), Vec::new());
        let mut snapshot = None;
        for (index, &seq) in steps.iter().enumerate() {
            let (key, value) = (random(seq), random(seq));
            all_keys.push(key.clone());
            all_values.push(value.clone());
            let (keys, values) = cache.append(key, value);
            keys.into_data().assert_eq(&Tensor::cat(all_keys.clone(), 2).into_data(), true);
            values.into_data().assert_eq(&Tensor::cat(all_values.clone(), 2).into_data(), true);
            if index == 2 {
                snapshot = Some((cache.clone(), Tensor::cat(all_keys.clone(), 2)));
            }
        }
        assert_eq!(cache.len, 516);
        assert_eq!(cache.buffers.as_ref().unwrap().0.dims()[2], 1024, "doubled from 512 at 516");
        let (mut earlier, expected) = snapshot.unwrap();
        let step = random(1);
        let (keys, _) = earlier.append(step.clone(), step.clone());
        keys.into_data().assert_eq(&Tensor::cat(vec![expected, step], 2).into_data(), true);
    }

    #[test]
    fn capacity_stops_at_the_context_limit() {
        let mut cache = LayerCache::<B>::new(300);
        cache.append(random(257), random(257));
        assert_eq!(cache.buffers.as_ref().unwrap().0.dims()[2], 300);
        let (keys, _) = cache.append(random(43), random(43));
        assert_eq!(keys.dims(), [2, 3, 300, 4]);
    }
}
