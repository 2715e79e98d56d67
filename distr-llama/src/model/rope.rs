//! Rotary position embedding in the Hugging Face layout: dimension `i` is rotated together
//! with dimension `i + head_dim / 2` (GGUF's interleaved Q/K rows are un-permuted on load).

use std::f64::consts::PI;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::model::config::{LlamaConfig, RopeScaling};

/// Cosine and sine tables `[max_seq_len, head_dim]` (each half repeated), built once; the sines
/// of the first half carry the minus sign of `rotate_half` (see [`RotaryAngles`]).
#[derive(Module, Debug)]
pub struct RotaryEmbedding<B: Backend> {
    pub cos: Tensor<B, 2>,
    pub signed_sin: Tensor<B, 2>,
}

/// Inverse frequencies `theta^(-2i / head_dim)`, `i < head_dim / 2`, with Llama 3 scaling.
pub fn inverse_frequencies(head_dim: usize, theta: f64, scaling: Option<&RopeScaling>) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|i| {
            let frequency = theta.powf(-((2 * i) as f64) / head_dim as f64);
            match scaling {
                Some(scaling) => llama3_scaled(frequency, scaling),
                None => frequency,
            }
        })
        .collect()
}

fn llama3_scaled(frequency: f64, scaling: &RopeScaling) -> f64 {
    let original = scaling.original_max_position_embeddings as f64;
    let wavelength = 2.0 * PI / frequency;
    let low_freq_wavelength = original / scaling.low_freq_factor;
    let high_freq_wavelength = original / scaling.high_freq_factor;
    if wavelength < high_freq_wavelength {
        frequency
    } else if wavelength > low_freq_wavelength {
        frequency / scaling.factor
    } else {
        let smooth = (original / wavelength - scaling.low_freq_factor)
            / (scaling.high_freq_factor - scaling.low_freq_factor);
        (1.0 - smooth) * frequency / scaling.factor + smooth * frequency
    }
}

impl<B: Backend> RotaryEmbedding<B> {
    pub fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        let frequencies = inverse_frequencies(config.head_dim, config.rope_theta, config.rope_scaling.as_ref());
        let half = config.head_dim / 2;
        let mut cos = Vec::with_capacity(config.max_seq_len * config.head_dim);
        let mut signed_sin = Vec::with_capacity(cos.capacity());
        for position in 0..config.max_seq_len {
            // The table repeats each half: dimension `i` and `i + half` share a frequency.
            for (dimension, frequency) in frequencies.iter().chain(&frequencies).enumerate() {
                let angle = position as f64 * frequency;
                let sign = if dimension < half { -1.0 } else { 1.0 };
                cos.push(angle.cos() as f32);
                signed_sin.push((sign * angle.sin()) as f32);
            }
        }
        let shape = [config.max_seq_len, 2 * half];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            signed_sin: Tensor::from_data(TensorData::new(signed_sin, shape), device),
        }
    }

    /// The angles of positions `start..start + seq`, for every layer of one forward pass, laid
    /// out for tensors of each of `head_counts` heads (the query's and the key's).
    pub fn angles(&self, start: usize, seq: usize, head_counts: &[usize]) -> RotaryAngles<B> {
        let head_dim = self.cos.dims()[1];
        let table = |table: &Tensor<B, 2>| table.clone().narrow(0, start, seq).reshape([1, seq, 1, head_dim]);
        let broadcast = RotaryTables { heads: 1, cos: table(&self.cos), sin: table(&self.signed_sin) };
        let tables = head_counts.iter().map(|&heads| broadcast.repeated(heads)).collect();
        RotaryAngles { broadcast, tables }
    }
}

/// Cosines and signed sines of one forward pass's positions, `[1, seq, heads, head_dim]` for
/// each head count the pass rotates: rotating is `x cos + swap(x) sin`, where `swap` exchanges
/// the two halves of each head and the sines of the first half carry the minus sign of
/// `rotate_half`. Taken once per forward pass rather than per layer, and applied without
/// slicing `x`: a decode step launches a few kernels for this instead of about ten per layer
/// (`benchmarks/results/2026-12-06-h100-decode-kernels/`). The tables have `x`'s shape, not
/// one broadcast over the heads: Flex multiplies same-shaped tensors as flat slices and walks
/// broadcast ones element by element, which gave the rotation 14% of the calling thread's samples
/// in the layers of a CPU prefill (`benchmarks/results/2026-12-06-cpu-block-attention/`).
#[derive(Debug, Clone)]
pub struct RotaryAngles<B: Backend> {
    /// One head, broadcast over any head count.
    broadcast: RotaryTables<B>,
    tables: Vec<RotaryTables<B>>,
}

#[derive(Debug, Clone)]
struct RotaryTables<B: Backend> {
    heads: usize,
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
}

impl<B: Backend> RotaryTables<B> {
    fn repeated(&self, heads: usize) -> Self {
        let repeat = |table: &Tensor<B, 4>| table.clone().repeat_dim(2, heads / self.heads);
        Self { heads, cos: repeat(&self.cos), sin: repeat(&self.sin) }
    }
}

impl<B: Backend> RotaryAngles<B> {
    /// `x` `[batch, seq, heads, head_dim]` rotated (with broadcast tables where the angles were
    /// not taken for `heads`).
    pub fn rotate(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [batch, seq, heads, head_dim] = x.dims();
        let tables = self.tables.iter().find(|tables| tables.heads == heads).unwrap_or(&self.broadcast);
        let swapped = x.clone().reshape([batch, seq, heads, 2, head_dim / 2]).flip([3]).reshape([batch, seq, heads, head_dim]);
        x * tables.cos.clone() + swapped * tables.sin.clone()
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;
    use distr_attn::backends::FlexBackend as B;

    use super::*;

    /// Rotating with the signed sines and the half swap equals Hugging Face's
    /// `x cos + rotate_half(x) sin` on the same positions.
    #[test]
    fn rotation_equals_rotate_half() {
        let config = LlamaConfig { head_dim: 8, max_seq_len: 16, ..LlamaConfig::smollm2_135m() };
        let device = Default::default();
        let rope = RotaryEmbedding::<B>::new(&config, &device);
        let (start, seq) = (5, 3);
        let x = Tensor::<B, 4>::random([2, seq, 3, 8], Distribution::Default, &device);
        let frequencies = inverse_frequencies(8, config.rope_theta, None);
        let table = |trig: fn(f64) -> f64| {
            let values: Vec<f32> = (start..start + seq)
                .flat_map(|position| frequencies.iter().chain(&frequencies).map(move |frequency| trig(position as f64 * frequency) as f32))
                .collect();
            Tensor::<B, 2>::from_data(TensorData::new(values, [seq, 8]), &device).reshape([1, seq, 1, 8])
        };
        let (cos, sin) = (table(f64::cos), table(f64::sin));
        let rotate_half = Tensor::cat(vec![x.clone().narrow(3, 4, 4).neg(), x.clone().narrow(3, 0, 4)], 3);
        let expected = x.clone() * cos + rotate_half * sin;
        // Tables laid out for x's three heads, and broadcast ones (taken for other head counts).
        for head_counts in [&[3][..], &[2]] {
            let rotated = rope.angles(start, seq, head_counts).rotate(x.clone());
            rotated.into_data().assert_approx_eq::<f32>(&expected.clone().into_data(), Default::default());
        }
    }

    #[test]
    fn llama3_scaling_keeps_high_and_stretches_low_frequencies() {
        let scaling = RopeScaling::new().with_original_max_position_embeddings(64);
        let plain = inverse_frequencies(16, 10000.0, None);
        let scaled = inverse_frequencies(16, 10000.0, Some(&scaling));
        assert_eq!(scaled[0], plain[0]);
        assert!((scaled[7] - plain[7] / 8.0).abs() < 1e-15);
        assert!(scaled.iter().zip(&plain).all(|(s, p)| s <= p && *s >= p / 8.0));
    }
}
