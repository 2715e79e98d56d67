//! Gradients through `Autodiff`: the op is differentiable with respect to query, key and
//! value (the permutation is a constant), checked against central finite differences.

mod common;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use common::*;
use distr_attn::{distr_attention, DistrAttentionBackend, DistrAttentionConfig, Representative};

const SHAPE: [usize; 4] = [1, 2, 12, 8];

/// `sum(output * weights)`, a scalar whose gradient is a weighted sum of all output entries.
fn loss<B: DistrAttentionBackend>(
    inputs: [Tensor<B, 4>; 3],
    weights: Tensor<B, 4>,
    config: &DistrAttentionConfig,
) -> Tensor<B, 1> {
    let [query, key, value] = inputs;
    let mask = bool_tensor::<B>(
        (0..SHAPE[2] * SHAPE[2]).map(|i| i % 7 == 3).collect(),
        [1, 1, SHAPE[2], SHAPE[2]],
        &query.device(),
    );
    distr_attention(query, key, value, Some(mask), config)
        .unwrap()
        .mul(weights)
        .sum()
}

fn values_f64<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f64> {
    tensor.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

/// Checks analytic gradients of all three inputs against finite differences with step `step`.
fn check_gradients<B: DistrAttentionBackend>(
    step: f64,
    tolerance: f64,
    config: DistrAttentionConfig,
) {
    type Ad<B> = Autodiff<B>;
    let device: burn::tensor::Device<B> = Default::default();
    let count: usize = SHAPE.iter().product();
    let inputs: Vec<Vec<f32>> = (0..3).map(|i| seeded_values(50 + i, count)).collect();
    let weights = seeded_values(60, count);
    let make = |values: &Vec<f32>| -> Tensor<Ad<B>, 4> {
        Tensor::from_data(TensorData::new(values.clone(), SHAPE), &device)
    };

    let tracked: Vec<Tensor<Ad<B>, 4>> = inputs.iter().map(|v| make(v).require_grad()).collect();
    let output = loss::<Ad<B>>(
        [tracked[0].clone(), tracked[1].clone(), tracked[2].clone()],
        make(&weights),
        &config,
    );
    let gradients = output.backward();

    for (input, name) in ["query", "key", "value"].iter().enumerate() {
        let analytic = values_f64(tracked[input].grad(&gradients).expect("gradient"));
        let (mut diff, mut norm) = (0.0, 0.0);
        for entry in (0..count).step_by(7) {
            let evaluate = |delta: f64| {
                let mut perturbed = inputs.clone();
                perturbed[input][entry] += delta as f32;
                let inner: Vec<Tensor<B, 4>> = perturbed
                    .iter()
                    .map(|v| Tensor::from_data(TensorData::new(v.clone(), SHAPE), &device))
                    .collect();
                let weights = Tensor::from_data(TensorData::new(weights.clone(), SHAPE), &device);
                values_f64(loss::<B>(
                    [inner[0].clone(), inner[1].clone(), inner[2].clone()],
                    weights,
                    &config,
                ))[0]
            };
            let numeric = (evaluate(step) - evaluate(-step)) / (2.0 * step);
            diff += (numeric - analytic[entry]).powi(2);
            norm += numeric.powi(2);
        }
        let error = (diff / norm).sqrt();
        assert!(error < tolerance, "{name}: gradient relative error {error}");
    }
}

fn configs() -> Vec<DistrAttentionConfig> {
    vec![
        DistrAttentionConfig::exact().with_causal(true),
        DistrAttentionConfig::new().with_block_rows(8),
        DistrAttentionConfig::new()
            .with_group_size(4)
            .with_block_rows(4)
            .with_representative(Representative::Mean),
        DistrAttentionConfig::new()
            .with_block_rows(4)
            .with_representative(Representative::Projected),
    ]
}

#[test]
fn ndarray_gradients_match_finite_differences() {
    for config in configs() {
        check_gradients::<burn::backend::NdArray<f32>>(1e-2, 2e-3, config);
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_gradients_match_finite_differences() {
    for config in configs() {
        check_gradients::<distr_attn::backends::WgpuBackend>(1e-2, 2e-3, config);
    }
}
