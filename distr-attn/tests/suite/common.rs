//! Shared helpers of the integration tests: seeded inputs and an independent, plain-Rust
//! exact attention in f64 (no Burn, no code under test).

#![allow(dead_code)]

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};

/// Deterministic standard-normal-ish values (sum of uniforms), independent of any backend RNG.
pub fn seeded_values(seed: u64, count: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f64) / (1u64 << 24) as f64
    };
    (0..count)
        .map(|_| ((0..4).map(|_| uniform()).sum::<f64>() - 2.0) as f32 * 1.7)
        .collect()
}

pub fn tensor<B: Backend>(values: Vec<f32>, shape: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

pub fn random<B: Backend>(seed: u64, shape: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
    tensor(seeded_values(seed, shape.iter().product()), shape, device)
}

pub fn to_vec<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

pub fn bool_tensor<B: Backend>(
    values: Vec<bool>,
    shape: [usize; 4],
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// ||a - b|| / ||b||.
pub fn relative_error(actual: &[f32], expected: &[f32]) -> f64 {
    assert_eq!(actual.len(), expected.len());
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&a, &e) in actual.iter().zip(expected) {
        diff += (a as f64 - e as f64).powi(2);
        norm += (e as f64).powi(2);
    }
    (diff / norm).sqrt()
}

/// Exact attention on host slices: query `[b, h, sq, d]`, key `[b, hkv, sk, d]`, value
/// `[b, hkv, sk, dv]`, mask `[b, h, sq, sk]` (true = masked), causal with queries at the last
/// positions. Fully masked rows are zero.
#[allow(clippy::too_many_arguments)]
pub fn plain_attention(
    query: &[f32],
    key: &[f32],
    value: &[f32],
    mask: Option<&[bool]>,
    [batch, heads, seq_q, head_dim]: [usize; 4],
    kv_heads: usize,
    seq_k: usize,
    value_dim: usize,
    causal: bool,
) -> Vec<f32> {
    let dims = [batch, heads, seq_q, head_dim];
    let scale = 1.0 / (head_dim as f64).sqrt();
    plain_attention_scaled(
        query, key, value, mask, dims, kv_heads, seq_k, value_dim, causal, scale,
    )
}

/// [`plain_attention`] with the score scale `scale`.
#[allow(clippy::too_many_arguments)]
pub fn plain_attention_scaled(
    query: &[f32],
    key: &[f32],
    value: &[f32],
    mask: Option<&[bool]>,
    [batch, heads, seq_q, head_dim]: [usize; 4],
    kv_heads: usize,
    seq_k: usize,
    value_dim: usize,
    causal: bool,
    scale: f64,
) -> Vec<f32> {
    let group = heads / kv_heads;
    let mut out = vec![0.0f32; batch * heads * seq_q * value_dim];
    for b in 0..batch {
        for h in 0..heads {
            let kv = h / group;
            for i in 0..seq_q {
                let q_row = &query[((b * heads + h) * seq_q + i) * head_dim..][..head_dim];
                let mut scores = vec![f64::NEG_INFINITY; seq_k];
                for (j, score) in scores.iter_mut().enumerate() {
                    let masked = mask.is_some_and(|m| m[((b * heads + h) * seq_q + i) * seq_k + j])
                        || (causal && j > i + seq_k - seq_q);
                    if !masked {
                        let k_row =
                            &key[((b * kv_heads + kv) * seq_k + j) * head_dim..][..head_dim];
                        *score = scale
                            * q_row
                                .iter()
                                .zip(k_row)
                                .map(|(&a, &c)| a as f64 * c as f64)
                                .sum::<f64>();
                    }
                }
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                if max == f64::NEG_INFINITY {
                    continue;
                }
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                let out_row = &mut out[((b * heads + h) * seq_q + i) * value_dim..][..value_dim];
                for (j, w) in weights.iter().enumerate() {
                    let v_row =
                        &value[((b * kv_heads + kv) * seq_k + j) * value_dim..][..value_dim];
                    for (o, &v) in out_row.iter_mut().zip(v_row) {
                        *o += (w / total * v as f64) as f32;
                    }
                }
            }
        }
    }
    out
}
