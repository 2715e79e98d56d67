//! Rotary position embedding in the Hugging Face layout: dimension `i` is rotated together
//! with dimension `i + head_dim / 2` (GGUF's interleaved Q/K rows are un-permuted on load).

use std::f64::consts::PI;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::model::config::{LlamaConfig, RopeScaling};

/// Cosine and sine tables `[max_seq_len, head_dim]` (each half repeated), built once.
#[derive(Module, Debug)]
pub struct RotaryEmbedding<B: Backend> {
    pub cos: Tensor<B, 2>,
    pub sin: Tensor<B, 2>,
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
        let mut sin = Vec::with_capacity(cos.capacity());
        for position in 0..config.max_seq_len {
            // The table repeats each half: dimension `i` and `i + half` share a frequency.
            for frequency in frequencies.iter().chain(&frequencies) {
                    let angle = position as f64 * frequency;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
            }
        }
        let shape = [config.max_seq_len, 2 * half];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Rotates `x` `[batch, heads, seq, head_dim]` whose first row is position `start`.
    pub fn apply(&self, x: Tensor<B, 4>, start: usize) -> Tensor<B, 4> {
        let [_, _, seq, head_dim] = x.dims();
        let cos = self.cos.clone().narrow(0, start, seq).unsqueeze::<4>();
        let sin = self.sin.clone().narrow(0, start, seq).unsqueeze::<4>();
        let half = head_dim / 2;
        let first = x.clone().narrow(3, 0, half);
        let second = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![second.neg(), first], 3);
        x * cos + rotated * sin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
