//! Gradients through `Autodiff`: the op is differentiable with respect to query, key and
//! value (the permutation is a constant), checked against central finite differences, on
//! NdArray and on Wgpu (`Autodiff<Wgpu>`, lavapipe in CI).

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use crate::common::*;
use distr_attn::{distr_attention, DistrAttentionBackend, DistrAttentionConfig, Representative};

const SEQ: usize = 12;
const HEAD_DIM: usize = 8;

/// One gradient check: query heads, key/value heads, which (query row, key) pairs are masked.
struct Case {
    heads: usize,
    kv_heads: usize,
    masked: fn(usize, usize) -> bool,
    config: DistrAttentionConfig,
}

impl Case {
    fn shapes(&self) -> [[usize; 4]; 3] {
        [
            [1, self.heads, SEQ, HEAD_DIM],
            [1, self.kv_heads, SEQ, HEAD_DIM],
            [1, self.kv_heads, SEQ, HEAD_DIM],
        ]
    }

    /// `sum(output * weights)`, a scalar whose gradient is a weighted sum of all output entries.
    fn loss<B: DistrAttentionBackend>(
        &self,
        inputs: &[Vec<f32>; 3],
        weights: &[f32],
        device: &B::Device,
        track: bool,
    ) -> (Tensor<B, 1>, Vec<Tensor<B, 4>>) {
        let tensors: Vec<Tensor<B, 4>> = inputs
            .iter()
            .zip(self.shapes())
            .map(|(values, shape)| {
                let tensor = tensor::<B>(values.clone(), shape, device);
                if track {
                    tensor.require_grad()
                } else {
                    tensor
                }
            })
            .collect();
        let mask = bool_tensor::<B>(
            (0..SEQ * SEQ)
                .map(|i| (self.masked)(i / SEQ, i % SEQ))
                .collect(),
            [1, 1, SEQ, SEQ],
            device,
        );
        let output = distr_attention(
            tensors[0].clone(),
            tensors[1].clone(),
            tensors[2].clone(),
            Some(mask),
            &self.config,
        )
        .unwrap();
        let weights = tensor::<B>(weights.to_vec(), self.shapes()[0], device);
        (output.mul(weights).sum(), tensors)
    }
}

fn values_f64<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f64> {
    tensor.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

/// Checks analytic gradients of all three inputs against finite differences with step `step`;
/// returns the analytic gradients.
fn check_gradients<B: DistrAttentionBackend>(
    step: f64,
    tolerance: f64,
    case: &Case,
) -> [Vec<f64>; 3] {
    let device: B::Device = Default::default();
    let inputs: [Vec<f32>; 3] =
        std::array::from_fn(|i| seeded_values(50 + i as u64, case.shapes()[i].iter().product()));
    let weights = seeded_values(60, case.shapes()[0].iter().product());

    let (output, tracked) = case.loss::<Autodiff<B>>(&inputs, &weights, &device, true);
    let gradients = output.backward();
    let analytic: [Vec<f64>; 3] =
        std::array::from_fn(|input| values_f64(tracked[input].grad(&gradients).expect("gradient")));

    for (input, name) in ["query", "key", "value"].iter().enumerate() {
        let (mut diff, mut norm) = (0.0, 0.0);
        for entry in (0..inputs[input].len()).step_by(7) {
            let evaluate = |delta: f64| {
                let mut perturbed = inputs.clone();
                perturbed[input][entry] += delta as f32;
                values_f64(case.loss::<B>(&perturbed, &weights, &device, false).0)[0]
            };
            let numeric = (evaluate(step) - evaluate(-step)) / (2.0 * step);
            diff += (numeric - analytic[input][entry]).powi(2);
            norm += numeric.powi(2);
        }
        let error = (diff / norm).sqrt();
        assert!(error < tolerance, "{name}: gradient relative error {error}");
    }
    analytic
}

fn sparse_mask(row: usize, key: usize) -> bool {
    (row * SEQ + key) % 7 == 3
}

fn cases() -> Vec<Case> {
    let case = |heads, kv_heads, config| Case {
        heads,
        kv_heads,
        masked: sparse_mask,
        config,
    };
    vec![
        case(2, 2, DistrAttentionConfig::exact().with_causal(true)),
        case(2, 2, DistrAttentionConfig::new().with_block_rows(8)),
        case(
            2,
            2,
            DistrAttentionConfig::new()
                .with_group_size(4)
                .with_block_rows(4)
                .with_representative(Representative::Mean),
        ),
        case(
            2,
            2,
            DistrAttentionConfig::new()
                .with_block_rows(4)
                .with_representative(Representative::Projected),
        ),
        // Grouped-query heads: the key/value gradients sum over the query heads sharing them.
        case(4, 2, DistrAttentionConfig::new().with_block_rows(8)),
    ]
}

/// Row 5 masks every key (its output is zero whatever the inputs), rows 0-4 mask the keys
/// after their own position: gradients stay finite, and row 5's query gradient is zero.
fn masked_rows_case() -> Case {
    Case {
        heads: 2,
        kv_heads: 2,
        masked: |row, key| row == 5 || (row < 5 && key > row),
        config: DistrAttentionConfig::new()
            .with_block_rows(4)
            .with_representative(Representative::Mean),
    }
}

fn check_masked_rows<B: DistrAttentionBackend>() {
    let [query, key, value] = check_gradients::<B>(1e-2, 2e-3, &masked_rows_case());
    for gradient in [&query, &key, &value] {
        assert!(
            gradient.iter().all(|g| g.is_finite()),
            "non-finite gradient"
        );
    }
    for head in 0..2 {
        let row = &query[(head * SEQ + 5) * HEAD_DIM..][..HEAD_DIM];
        assert!(row.iter().all(|&g| g == 0.0), "fully masked row: {row:?}");
    }
}

#[test]
fn ndarray_gradients_match_finite_differences() {
    for case in cases() {
        check_gradients::<burn::backend::NdArray<f32>>(1e-2, 2e-3, &case);
    }
}

#[test]
fn ndarray_gradients_of_masked_rows() {
    check_masked_rows::<burn::backend::NdArray<f32>>();
}

#[test]
fn flex_gradients_match_finite_differences() {
    for case in cases() {
        check_gradients::<distr_attn::backends::FlexBackend>(1e-2, 2e-3, &case);
    }
}

#[test]
fn flex_gradients_of_masked_rows() {
    check_masked_rows::<distr_attn::backends::FlexBackend>();
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_gradients_match_finite_differences() {
    for case in cases() {
        check_gradients::<distr_attn::backends::WgpuBackend>(1e-2, 2e-3, &case);
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_gradients_of_masked_rows() {
    check_masked_rows::<distr_attn::backends::WgpuBackend>();
}
