//! The fused backward kernels through `Autodiff` on Wgpu (lavapipe in CI, the portable f32
//! kernels): gradients of query, key and value against the reference's autodiff gradients on
//! the CPU (same inputs, same seed) and against central finite differences of the kernel's
//! own forward. Every case checks that the backward kernels ran, so a silent fallback to the
//! reference cannot pass.

#![cfg(feature = "wgpu")]

use burn::backend::wgpu::WgpuRuntime;
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, FloatDType, Tensor};
use burn_cubecl::CubeBackend;
use crate::common::*;
use distr_attn::kernel::{fused_forward, kernel_launches};
use distr_attn::{distr_attention, AttentionProblem, DistrAttentionBackend, DistrAttentionConfig, Grouping, Representative};

type Cube = CubeBackend<WgpuRuntime, f32, i32, u32>;
type Fused = distr_attn::backends::WgpuBackend;
type Cpu = distr_attn::backends::NdArrayBackend;

/// `[batch, heads, kv_heads, seq_q, seq_k, head_dim]` (value dim = head dim) and the op's options.
struct Case {
    dims: [usize; 6],
    config: DistrAttentionConfig,
}

impl Case {
    fn new(dims: [usize; 6], group_size: usize, causal: bool) -> Self {
        let config = DistrAttentionConfig::new()
            .with_group_size(group_size)
            .with_block_rows(64)
            .with_causal(causal)
            .with_seed(7);
        Self { dims, config }
    }

    fn shapes(&self) -> [[usize; 4]; 3] {
        let [batch, heads, kv_heads, seq_q, seq_k, head_dim] = self.dims;
        [[batch, heads, seq_q, head_dim], [batch, kv_heads, seq_k, head_dim], [batch, kv_heads, seq_k, head_dim]]
    }

    fn inputs(&self) -> [Vec<f32>; 3] {
        let seed = self.dims.iter().sum::<usize>() as u64;
        let shapes = self.shapes();
        std::array::from_fn(|index| seeded_values(seed * 10 + index as u64, shapes[index].iter().product()))
    }

    /// Weights of the loss `sum(output * weights)`.
    fn weights(&self) -> Vec<f32> {
        seeded_values(99, self.shapes()[0].iter().product())
    }
}

/// `sum(output * weights)` on `B` for the given inputs, in `dtype`, and the tracked inputs.
fn loss<B: DistrAttentionBackend>(
    case: &Case,
    inputs: &[Vec<f32>; 3],
    dtype: DType,
    track: bool,
) -> (Tensor<B, 1>, [Tensor<B, 4>; 3]) {
    let device = Default::default();
    let shapes = case.shapes();
    let tensors: [Tensor<B, 4>; 3] = std::array::from_fn(|index| {
        let tensor = tensor::<B>(inputs[index].clone(), shapes[index], &device);
        let tensor = if dtype == DType::F16 { tensor.cast(FloatDType::F16) } else { tensor };
        if track {
            tensor.require_grad()
        } else {
            tensor
        }
    });
    let [query, key, value] = tensors.clone();
    let output = distr_attention(query, key, value, None, &case.config).unwrap();
    let weights = tensor::<B>(case.weights(), shapes[0], &device);
    (output.cast(FloatDType::F32).mul(weights).sum(), tensors)
}

/// The gradients of [`loss`] with respect to query, key and value, as f32 host vectors.
fn gradients<B: AutodiffBackend + DistrAttentionBackend>(case: &Case, inputs: &[Vec<f32>; 3], dtype: DType) -> [Vec<f32>; 3] {
    let (loss, tracked) = loss::<B>(case, inputs, dtype, true);
    let gradients = loss.backward();
    tracked.map(|tensor| to_vec(tensor.grad(&gradients).expect("a gradient for every input")))
}

/// The fused gradients on `B` (whose backward must launch the kernels) against the reference's
/// autodiff gradients on the CPU, on the same (for f16: f16-rounded) values.
fn assert_matches_reference<B: AutodiffBackend + DistrAttentionBackend>(case: &Case, dtype: DType, tolerance: f64) {
    let inputs = case.inputs();
    let launches = kernel_launches();
    let actual = gradients::<B>(case, &inputs, dtype);
    assert!(kernel_launches() >= launches + 2, "{:?}: the fused forward and backward did not both run", case.dims);
    let shapes = case.shapes();
    let mut index = 0;
    let rounded = inputs.map(|values| {
        let tensor = tensor::<Cube>(values, shapes[index], &Default::default());
        index += 1;
        match dtype {
            DType::F16 => to_vec(tensor.cast(FloatDType::F16).cast(FloatDType::F32)),
            _ => to_vec(tensor),
        }
    });
    let expected = gradients::<Autodiff<Cpu>>(case, &rounded, DType::F32);
    for (name, (actual, expected)) in ["query", "key", "value"].iter().zip(actual.iter().zip(&expected)) {
        let error = relative_error(actual, expected);
        assert!(
            error < tolerance,
            "{:?} G={} causal={} {:?}: {name} gradient relative error {error:e}",
            case.dims,
            case.config.group_size,
            case.config.causal,
            dtype
        );
    }
}

#[test]
fn exact_gradients_match_reference_causal_gqa_odd_lengths() {
    assert_matches_reference::<Autodiff<Cube>>(&Case::new([1, 4, 2, 70, 90, 32], 1, true), DType::F32, 1e-4);
    assert_matches_reference::<Autodiff<Cube>>(&Case::new([2, 2, 2, 33, 150, 64], 1, false), DType::F32, 1e-4);
}

#[test]
fn grouped_gradients_match_reference_for_every_representative() {
    let cases = [
        ([2, 2, 1, 100, 77, 64], 2, false, Representative::Sample, Grouping::Lsh, 64),
        ([1, 2, 2, 130, 130, 32], 4, true, Representative::Mean, Grouping::Lsh, 128),
        ([1, 4, 2, 70, 90, 64], 2, true, Representative::SampledKeys, Grouping::LshStrided, 64),
        ([1, 1, 1, 65, 50, 96], 8, false, Representative::Sample, Grouping::LshStrided, 64),
        ([1, 2, 1, 60, 90, 64], 2, true, Representative::Mean, Grouping::Gram, 64),
    ];
    for (dims, group_size, causal, representative, grouping, block_rows) in cases {
        let mut case = Case::new(dims, group_size, causal);
        case.config = case
            .config
            .with_representative(representative)
            .with_grouping(grouping)
            .with_block_rows(block_rows);
        assert_matches_reference::<Autodiff<Cube>>(&case, DType::F32, 1e-4);
    }
}

/// Burn's `Wgpu` (with fusion) runs the backward as one custom operation of its stream, and
/// f16 inputs get f16 gradients computed in f32.
#[test]
fn fused_wgpu_and_f16_gradients_match_reference() {
    assert_matches_reference::<Autodiff<Fused>>(&Case::new([1, 2, 1, 70, 80, 64], 2, true), DType::F32, 1e-4);
    assert_matches_reference::<Autodiff<Cube>>(&Case::new([1, 2, 2, 90, 100, 64], 2, false), DType::F16, 5e-3);
}

/// The kernel's gradients against central differences of the kernel's own forward. The
/// grouping is a constant of the gradient, but a step can move a column's sign code and with it
/// the permutation (a jump in the loss): entries whose left and right differences disagree are
/// skipped, and at most one in ten may be.
#[test]
fn fused_gradients_match_finite_differences() {
    let case = Case::new([1, 2, 1, 20, 24, 32], 2, true);
    let inputs = case.inputs();
    let analytic = gradients::<Autodiff<Cube>>(&case, &inputs, DType::F32);
    let step = 1e-2f32;
    let evaluate = |index: usize, entry: usize, delta: f32| {
        let mut perturbed = inputs.clone();
        perturbed[index][entry] += delta;
        to_vec(loss::<Cube>(&case, &perturbed, DType::F32, false).0)[0] as f64
    };
    for (index, name) in ["query", "key", "value"].iter().enumerate() {
        let center = evaluate(index, 0, 0.0);
        let (mut diff, mut norm, mut checked, mut skipped) = (0.0f64, 0.0f64, 0, 0);
        for entry in (0..inputs[index].len()).step_by(11) {
            let right = (evaluate(index, entry, step) - center) / step as f64;
            let left = (center - evaluate(index, entry, -step)) / step as f64;
            if (right - left).abs() > 0.5 {
                skipped += 1;
                continue;
            }
            let numeric = (right + left) / 2.0;
            diff += (numeric - analytic[index][entry] as f64).powi(2);
            norm += numeric.powi(2);
            checked += 1;
        }
        assert!(skipped * 10 <= checked, "{name}: {skipped} of {} steps moved the grouping", checked + skipped);
        let error = (diff / norm).sqrt();
        assert!(error < 3e-3, "{name}: gradient relative error {error:e} against finite differences");
    }
}

/// The backend says before the forward what its kernels do not cover: quiet softmax, the
/// `Projected` representative (which `Autodiff` then runs as exact attention on the expanded
/// query, below) and exact attention at d = 128 (its rows would not fit a unit's registers:
/// `MAX_BACKWARD_FLOATS_PER_UNIT`; G = 2 there is covered); and that without tensor cores
/// no forward saves log-sum-exps for the backward.
#[test]
fn what_the_backward_kernels_lack_is_refused_before_the_forward() {
    let case = Case::new([1, 2, 2, 40, 40, 32], 2, false);
    let device = Default::default();
    let [query, key, value] = case.shapes().map(|shape| random::<Cube>(1, shape, &device));
    let problem = AttentionProblem::check(&query, &key, &value, None, &case.config).unwrap();
    assert!(Cube::has_fused_backward(&problem, DType::F32, &device));
    assert!(!Cube::has_fused_backward(&problem.clone().with_quiet_softmax(true), DType::F32, &device));
    let projected = AttentionProblem::check(&query, &key, &value, None, &case.config.clone().with_representative(Representative::Projected)).unwrap();
    assert!(!Cube::has_fused_backward(&projected, DType::F32, &device));
    assert!(Cube::has_fused_backward(&projected.expanded(), DType::F32, &device));
    assert!(!Cpu::has_fused_backward(&problem, DType::F32, &Default::default()));
    // The forward keeps log-sum-exps for the backward on tensor cores only.
    let exact = problem.expanded();
    assert!(!Cube::saves_log_sums(&exact, DType::F32, &device) && !Cube::saves_log_sums(&exact, DType::F16, &device));
    assert!(!Cpu::saves_log_sums(&exact, DType::F32, &Default::default()));
    let wide = Case::new([1, 2, 2, 40, 40, 128], 1, false);
    let [query, key, value] = wide.shapes().map(|shape| random::<Cube>(1, shape, &device));
    let exact_wide = AttentionProblem::check(&query, &key, &value, None, &wide.config).unwrap();
    assert!(!Cube::has_fused_backward(&exact_wide, DType::F32, &device));
    let grouped_wide = AttentionProblem::check(&query, &key, &value, None, &wide.config.clone().with_group_size(2)).unwrap();
    assert!(Cube::has_fused_backward(&grouped_wide, DType::F32, &device));
}

/// Groupings and representatives the kernels do not form run as the exact kernels on the
/// expanded query, forward and backward (`assert_matches_reference` counts the launches), with
/// the reference's gradients: the query's through the tracked ops that expand it.
#[test]
fn groupings_the_kernels_lack_run_the_exact_kernels_on_the_expanded_query() {
    let cases = [
        (Representative::Projected, Grouping::Lsh, 2, false),
        (Representative::Mean, Grouping::LshNorms, 2, true),
        (Representative::SampledKeys, Grouping::Gram, 4, true),
        (Representative::Sample, Grouping::GramKeyWeighted, 2, false),
    ];
    for (representative, grouping, group_size, causal) in cases {
        let mut case = Case::new([1, 4, 2, 50, 60, 32], group_size, causal);
        case.config = case.config.with_representative(representative).with_grouping(grouping);
        assert_matches_reference::<Autodiff<Cube>>(&case, DType::F32, 1e-4);
    }
    let mut case = Case::new([1, 2, 1, 40, 40, 64], 2, true);
    case.config = case.config.with_representative(Representative::Projected);
    assert_matches_reference::<Autodiff<Fused>>(&case, DType::F16, 5e-3);
}

/// The Gram grouping at head dim 128 needs 34.5 KB of shared memory in the pre-pass: a device
/// with less (lavapipe: 32 KiB) refuses the forward kernel, so the backend must say before the
/// forward that the backward is not fused either (it used to accept it, and the backward then
/// panicked on the pre-pass's refusal). Either way the gradients are the reference's.
#[test]
fn gram_grouping_beyond_shared_memory_is_refused_before_the_forward() {
    let mut case = Case::new([1, 1, 1, 40, 40, 128], 2, false);
    case.config = case.config.with_representative(Representative::Mean).with_grouping(Grouping::Gram);
    let device = Default::default();
    let [query, key, value] = case.shapes().map(|shape| random::<Cube>(1, shape, &device));
    let problem = AttentionProblem::check(&query, &key, &value, None, &case.config).unwrap();
    let primitive = |tensor: Tensor<Cube, 4>| tensor.into_primitive().tensor();
    let forward_fused = fused_forward(primitive(query), primitive(key), primitive(value), &problem).is_ok();
    assert_eq!(Cube::has_fused_backward(&problem, DType::F32, &device), forward_fused);
    let inputs = case.inputs();
    let actual = gradients::<Autodiff<Cube>>(&case, &inputs, DType::F32);
    let expected = gradients::<Autodiff<Cpu>>(&case, &inputs, DType::F32);
    for (actual, expected) in actual.iter().zip(&expected) {
        assert!(relative_error(actual, expected) < 1e-4);
    }
}
