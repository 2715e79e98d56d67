//! The fused CubeCL kernel against the tensor-op reference, on Wgpu (lavapipe in CI): same
//! inputs, same seed, f32 outputs within 1e-4 relative (a different column permutation would
//! be far off), f16 within f16 rounding. Every case calls the kernel directly and fails if it
//! refuses, so a silent fallback cannot pass.
//!
//! Each distinct (head dim, group size, block rows, causal, dtype) is a shader compiled at
//! first launch: the grid is kept small for CI. lavapipe reports no `mma`, so every case runs
//! the portable path; the tensor-core path is checked on CUDA by `distr-bench --check`.

#![cfg(feature = "wgpu")]

use burn::backend::wgpu::WgpuRuntime;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_cubecl::CubeBackend;
use crate::common::*;
use distr_attn::kernel::{fused_forward_on_path, kernel_launches, KernelPath, KernelTuning, Strategy};
use distr_attn::reference::distr_attention_reference;
use distr_attn::{distr_attention, AttentionProblem, DistrAttentionConfig, Grouping, Representative, DECODE_QUERY_ROWS};

type Cube = CubeBackend<WgpuRuntime, f32, i32, u32>;
type Cpu = distr_attn::backends::NdArrayBackend;

/// `[batch, heads, kv_heads, seq_q, seq_k, head_dim]` (value dim = head dim).
struct Case {
    dims: [usize; 6],
    group_size: usize,
    block_rows: usize,
    causal: bool,
    representative: Representative,
    grouping: Grouping,
}

impl Case {
    fn config(&self) -> DistrAttentionConfig {
        DistrAttentionConfig::new()
            .with_group_size(self.group_size)
            .with_block_rows(self.block_rows)
            .with_causal(self.causal)
            .with_representative(self.representative)
            .with_grouping(self.grouping)
            .with_seed(7)
    }

    /// Query, key and value shapes.
    fn shapes(&self) -> [[usize; 4]; 3] {
        let [batch, heads, kv_heads, seq_q, seq_k, head_dim] = self.dims;
        [[batch, heads, seq_q, head_dim], [batch, kv_heads, seq_k, head_dim], [batch, kv_heads, seq_k, head_dim]]
    }

    fn inputs(&self, seed: u64) -> [(Vec<f32>, [usize; 4]); 3] {
        let mut index = 0;
        self.shapes().map(|shape| {
            index += 1;
            (seeded_values(seed * 10 + index, shape.iter().product()), shape)
        })
    }
}

/// The kernel's output and the reference's, both as f32 host vectors, and the kernel path.
fn kernel_and_reference(case: &Case, half: bool) -> (Vec<f32>, Vec<f32>, KernelPath) {
    let inputs = case.inputs(case.dims.iter().sum::<usize>() as u64).map(|(values, _)| values);
    kernel_and_reference_on(case, inputs, half)
}

/// [`kernel_and_reference`] on given query, key and value values (shaped by `case`).
fn kernel_and_reference_on(case: &Case, inputs: [Vec<f32>; 3], half: bool) -> (Vec<f32>, Vec<f32>, KernelPath) {
    let device = Default::default();
    let shapes = case.shapes();
    let [query, key, value] = [0, 1, 2].map(|index| {
        let tensor = tensor::<Cube>(inputs[index].clone(), shapes[index], &device);
        if half {
            tensor.cast(burn::tensor::FloatDType::F16)
        } else {
            tensor
        }
    });
    let problem = AttentionProblem::check(&query, &key, &value, None, &case.config()).unwrap();
    let primitive = |tensor: &Tensor<Cube, 4>| tensor.clone().into_primitive().tensor();
    let (output, path) = fused_forward_on_path(primitive(&query), primitive(&key), primitive(&value), &problem, KernelTuning::default())
        .unwrap_or_else(|reason| panic!("kernel refused {:?}: {reason}", case.dims));
    let [batch, heads, seq_q, _] = shapes[0];
    let value_dim = shapes[2][3];
    assert_eq!(
        output.meta.strides()[..],
        [seq_q * heads * value_dim, value_dim, heads * value_dim, 1],
        "the output is [batch, seq_q, heads, value_dim] rows, read as [batch, heads, seq_q, value_dim]"
    );
    assert_eq!(output.meta.shape()[..], [batch, heads, seq_q, value_dim]);
    let output = Tensor::<Cube, 4>::from_primitive(TensorPrimitive::Float(output));
    // The reference in f32 on the CPU, on the same (for f16: f16-rounded) values: on lavapipe
    // its matmuls would cost minutes of autotuning.
    let on_cpu = |tensor: Tensor<Cube, 4>| {
        let shape = tensor.dims();
        crate::common::tensor::<Cpu>(to_vec(tensor), shape, &Default::default())
    };
    let expected = distr_attention_reference(on_cpu(query), on_cpu(key), on_cpu(value), None, &problem);
    (to_vec(output), to_vec(expected), path)
}

fn assert_parity(case: Case, half: bool, tolerance: f64) -> KernelPath {
    let (actual, expected, path) = kernel_and_reference(&case, half);
    let error = relative_error(&actual, &expected);
    assert!(
        error < tolerance,
        "dims {:?} G={} l={} causal={} half={half}: relative error {error:e}",
        case.dims,
        case.group_size,
        case.block_rows,
        case.causal
    );
    path
}

fn case(dims: [usize; 6], group_size: usize, block_rows: usize, causal: bool) -> Case {
    Case {
        dims,
        group_size,
        block_rows,
        causal,
        representative: Representative::Sample,
        grouping: Grouping::Lsh,
    }
}

#[test]
fn grouped_f32_matches_reference_odd_lengths_and_gqa() {
    assert_parity(case([2, 4, 2, 100, 77, 64], 2, 64, false), false, 1e-4);
    assert_parity(case([1, 2, 1, 70, 150, 64], 2, 64, true), false, 1e-4);
}

#[test]
fn other_head_dims_group_sizes_and_block_rows_match_reference() {
    assert_parity(case([1, 2, 2, 130, 130, 32], 4, 128, false), false, 1e-4);
    assert_parity(case([1, 1, 1, 65, 90, 128], 8, 64, true), false, 1e-4);
    let mut mean = case([1, 2, 1, 64, 33, 96], 2, 64, false);
    mean.representative = Representative::Mean;
    assert_parity(mean, false, 1e-4);
}

/// The paper code's variant (Q' sums the group, K' selects its first member's key column,
/// groups strided over the sorted order), and each of its two halves alone.
#[test]
fn sampled_keys_and_strided_groups_match_reference() {
    let cases = [
        ([1, 2, 1, 100, 77, 64], 2, false, Representative::SampledKeys, Grouping::Lsh),
        ([1, 2, 2, 70, 90, 32], 4, true, Representative::SampledKeys, Grouping::LshStrided),
        ([1, 1, 1, 60, 50, 64], 8, false, Representative::Sample, Grouping::LshStrided),
    ];
    for (dims, group_size, causal, representative, grouping) in cases {
        let mut paper = case(dims, group_size, 64, causal);
        paper.representative = representative;
        paper.grouping = grouping;
        assert_parity(paper, false, 1e-4);
    }
}

/// Groups chosen from the columns' distances in the pre-pass (`Grouping::Gram`), both
/// query-side representatives, every group size, both block sizes, GQA and causal.
#[test]
fn gram_grouping_matches_reference() {
    let cases = [
        ([1, 2, 1, 100, 77, 64], 2, 64, false, Representative::Mean),
        ([1, 2, 2, 90, 130, 32], 4, 128, true, Representative::Sample),
        ([1, 1, 1, 60, 50, 64], 8, 64, false, Representative::Mean),
        ([1, 1, 1, 70, 40, 96], 2, 64, false, Representative::Mean),
    ];
    for (dims, group_size, block_rows, causal, representative) in cases {
        let mut gram = case(dims, group_size, block_rows, causal);
        gram.representative = representative;
        gram.grouping = Grouping::Gram;
        assert_parity(gram, false, 1e-4);
    }
}

/// The key-weighted Gram grouping (`Grouping::GramKeyWeighted`: each pair's query distance
/// times its key columns' mean squared length) in the pre-pass, with its key lengths from the
/// kernels' own reduction: keys whose columns differ in scale by up to 4x (so the weights
/// change the pairs), both query-side representatives, grouped-query heads, causal, G = 2
/// and 4.
#[test]
fn key_weighted_gram_grouping_matches_reference() {
    let cases = [
        ([1, 2, 1, 100, 77, 64], 2, 64, false, Representative::Mean),
        ([2, 4, 2, 90, 130, 32], 4, 128, true, Representative::Sample),
        ([1, 3, 3, 40, 70, 64], 2, 64, true, Representative::Sample),
    ];
    for (dims, group_size, block_rows, causal, representative) in cases {
        let mut weighted = case(dims, group_size, block_rows, causal);
        weighted.representative = representative;
        weighted.grouping = Grouping::GramKeyWeighted;
        let [query, (key, key_shape), value] = weighted.inputs(5);
        let head_dim = key_shape[3];
        let key = key.iter().enumerate().map(|(index, value)| value * (1.0 + 3.0 * ((index % head_dim) % 5) as f32 / 4.0)).collect();
        let inputs: [Vec<f32>; 3] = [query.0, key, value.0];
        let (actual, expected, _) = kernel_and_reference_on(&weighted, inputs.clone(), false);
        let error = relative_error(&actual, &expected);
        assert!(error < 1e-4, "dims {dims:?}: relative error {error:e}");
        // The weights must matter here, or the case could not tell the two groupings apart.
        let mut plain = weighted;
        plain.grouping = Grouping::Gram;
        let (_, unweighted, _) = kernel_and_reference_on(&plain, inputs, false);
        let apart = relative_error(&unweighted, &expected);
        assert!(apart > 1e-3, "dims {dims:?}: key weights changed the output by only {apart:e}");
    }
}

/// Integer-valued queries make many column distances exactly equal, in the kernel's f32 and the
/// reference's f64 alike: the kernel's pairing rounds and the reference's greedy scan must
/// break every tie the same way (by the pair's scan position), and so must the swaps.
#[test]
fn gram_pairs_break_ties_as_the_reference_does() {
    for (dims, block_rows) in [([1, 2, 1, 100, 60, 64], 64), ([1, 1, 1, 128, 40, 32], 128)] {
        let mut gram = case(dims, 2, block_rows, false);
        gram.representative = Representative::Mean;
        gram.grouping = Grouping::Gram;
        let [(query, _), (key, _), (value, _)] = gram.inputs(11);
        let query = query.iter().map(|value| (value * 1.5).round()).collect();
        let (actual, expected, _) = kernel_and_reference_on(&gram, [query, key, value], false);
        let error = relative_error(&actual, &expected);
        assert!(error < 1e-4, "dims {dims:?}: relative error {error:e}");
    }
}

/// At head dim 128 the distances alone take 32 512 bytes of shared memory: a device with more
/// (CUDA's 48 KiB) runs the kernel, one with 32 KiB (lavapipe) refuses it by name and the
/// public op falls back to the reference. Either way the output is the reference's.
#[test]
fn gram_grouping_at_head_dim_128_runs_where_its_distances_fit() {
    let mut gram = case([1, 1, 1, 70, 40, 128], 2, 64, false);
    gram.representative = Representative::Mean;
    gram.grouping = Grouping::Gram;
    let device = Default::default();
    let [query, key, value] = [0, 1, 2].map(|index| {
        let (values, shape) = gram.inputs(3)[index].clone();
        tensor::<Cube>(values, shape, &device)
    });
    let problem = AttentionProblem::check(&query, &key, &value, None, &gram.config()).unwrap();
    let primitive = |tensor: &Tensor<Cube, 4>| tensor.clone().into_primitive().tensor();
    match fused_forward_on_path(primitive(&query), primitive(&key), primitive(&value), &problem, KernelTuning::default()) {
        Ok(_) => {
            assert_parity(gram, false, 1e-4);
        }
        Err(reason) => {
            assert!(reason.to_string().contains("Gram grouping within the device's"), "{reason}");
            assert!(public_op_error(gram.shapes(), &gram.config()) < 1e-4);
        }
    }
}

#[test]
fn group_size_one_is_exact_flash_attention() {
    let exact = case([1, 3, 1, 50, 81, 64], 1, 64, true);
    let (actual, _, _) = kernel_and_reference(&exact, false);
    let [query, key, value] = exact.inputs(exact.dims.iter().sum::<usize>() as u64).map(|(values, _)| values);
    let expected = plain_attention(&query, &key, &value, None, [1, 3, 50, 64], 1, 81, 64, true);
    let error = relative_error(&actual, &expected);
    assert!(error < 1e-4, "relative error {error:e}");
}

/// f16 is a tensor-core storage type: on a device without `mma` the feature query must keep
/// the launch on the portable path (a cmma/mma kernel on wgpu would return zeros).
#[test]
fn f16_matches_reference_within_half_precision_on_the_portable_path() {
    let path = assert_parity(case([1, 2, 2, 90, 100, 64], 2, 64, false), true, 3e-3);
    assert_eq!(path, KernelPath::Portable);
}

/// The public op on `burn::backend::Wgpu` (fusion) goes through the kernel.
#[test]
fn public_op_on_fused_wgpu_takes_the_kernel_path() {
    let before = kernel_launches();
    let config = DistrAttentionConfig::new().with_block_rows(64).with_seed(7);
    let error = public_op_error([[1, 2, 70, 64], [1, 2, 77, 64], [1, 2, 77, 64]], &config);
    assert!(kernel_launches() > before, "the kernel was not launched");
    assert!(error < 1e-4, "relative error {error:e}");
}

/// KV-cache decode steps (one query row, GQA, causal against a longer cache) through the
/// public op on fused Wgpu, with the causal offset of the last position, exact and G = 2:
/// split-key decode, whatever the cache length.
#[test]
fn decode_steps_on_fused_wgpu_match_reference() {
    for group_size in [1, 2] {
        let config = DistrAttentionConfig::new().with_causal(true).with_group_size(group_size).with_seed(3);
        for seq_k in [77, 2053] {
            let before = kernel_launches();
            let error = public_op_error([[1, 6, 1, 64], [1, 2, seq_k, 64], [1, 2, seq_k, 64]], &config);
            assert!(kernel_launches() > before, "G={group_size}, cache of {seq_k}: the kernel was not launched");
            assert!(error < 1e-4, "G={group_size}, cache of {seq_k}: relative error {error:e}");
        }
    }
}

/// Split-key decode against the reference: one to [`DECODE_QUERY_ROWS`] query rows, grouped-
/// query heads sharing a cube, caches long enough for many splits (lavapipe reports no SM
/// count, so the launcher assumes 16 SMs: about 32 cubes), causal and not, every
/// representative and layout, and head dims other than 64.
#[test]
fn split_key_decode_matches_reference() {
    let cases = [
        ([2, 6, 2, 1, 1000, 64], 1, false, Representative::Sample, Grouping::Lsh),
        ([1, 6, 2, 3, 1000, 64], 1, true, Representative::Sample, Grouping::Lsh),
        ([1, 4, 4, DECODE_QUERY_ROWS, 333, 128], 1, true, Representative::Sample, Grouping::Lsh),
        ([1, 6, 2, 1, 1000, 64], 2, true, Representative::Sample, Grouping::Lsh),
        ([2, 4, 1, 5, 700, 32], 4, false, Representative::Mean, Grouping::Lsh),
        ([1, 3, 1, 2, 500, 64], 2, true, Representative::SampledKeys, Grouping::LshStrided),
        ([1, 2, 2, 1, 9, 96], 8, false, Representative::Sample, Grouping::Lsh),
    ];
    for (dims, group_size, causal, representative, grouping) in cases {
        let mut decode = case(dims, group_size, 64, causal);
        decode.representative = representative;
        decode.grouping = grouping;
        assert_eq!(assert_parity(decode, false, 1e-4), KernelPath::SplitKeys, "{dims:?}");
    }
    assert_eq!(assert_parity(case([1, 6, 2, 1, 1000, 64], 2, 64, true), true, 3e-3), KernelPath::SplitKeys);
}

/// The query heads of one key head share a cube in split-key decode: a NaN in one head's query
/// row makes that head's output NaN and leaves every other row as the reference has it.
#[test]
fn split_key_decode_keeps_a_nan_query_in_its_row() {
    let decode = case([1, 6, 2, 2, 300, 64], 1, 64, true);
    let [mut query, key, value] = decode.inputs(5).map(|(values, _)| values);
    let poisoned_row = 64; // head 0, query row 1: its first element
    query[poisoned_row] = f32::NAN;
    let (actual, expected, path) = kernel_and_reference_on(&decode, [query, key, value], false);
    assert_eq!(path, KernelPath::SplitKeys);
    for (row, (actual, expected)) in actual.chunks(64).zip(expected.chunks(64)).enumerate() {
        if row == 1 {
            assert!(actual.iter().all(|value| value.is_nan()), "the poisoned row is not NaN: {actual:?}");
        } else {
            let error = relative_error(actual, expected);
            assert!(error < 1e-4, "row {row}: relative error {error:e}");
        }
    }
}

/// Above [`DECODE_QUERY_ROWS`] query rows split-key decode refuses, and the default strategy
/// takes the forward kernel.
#[test]
fn split_key_decode_is_for_decode_sized_calls() {
    let prefill = || case([1, 2, 2, DECODE_QUERY_ROWS + 1, 40, 64], 1, 64, false);
    assert_eq!(assert_parity(prefill(), false, 1e-4), KernelPath::Portable);
    let prefill = prefill();
    let device = Default::default();
    let [query, key, value] = prefill.inputs(1).map(|(values, shape)| tensor::<Cube>(values, shape, &device));
    let problem = AttentionProblem::check(&query, &key, &value, None, &prefill.config()).unwrap();
    let primitive = |tensor: &Tensor<Cube, 4>| tensor.clone().into_primitive().tensor();
    let forced = KernelTuning { strategy: Strategy::SplitKeys, ..KernelTuning::default() };
    match fused_forward_on_path(primitive(&query), primitive(&key), primitive(&value), &problem, forced) {
        Err(reason) => assert!(reason.to_string().contains("seq_q"), "{reason}"),
        Ok(_) => panic!("split-key decode ran {} query rows", DECODE_QUERY_ROWS + 1),
    }
}

/// Relative error of `distr_attention` on fused Wgpu against the reference on the CPU, for
/// seeded inputs of the given query, key and value shapes.
fn public_op_error(shapes: [[usize; 4]; 3], config: &DistrAttentionConfig) -> f64 {
    type B = distr_attn::backends::WgpuBackend;
    let device = Default::default();
    let [query, key, value] = shapes.map(|shape| random::<B>(shape.iter().sum::<usize>() as u64, shape, &device));
    let output = distr_attention(query.clone(), key.clone(), value.clone(), None, config).unwrap();
    let actual = to_vec(output);
    let problem = AttentionProblem::check(&query, &key, &value, None, config).unwrap();
    let on_cpu = |tensor: Tensor<B, 4>| {
        let shape = tensor.dims();
        crate::common::tensor::<Cpu>(to_vec(tensor), shape, &Default::default())
    };
    let expected = to_vec(distr_attention_reference(on_cpu(query), on_cpu(key), on_cpu(value), None, &problem));
    relative_error(&actual, &expected)
}

/// Quiet softmax is not in the kernel: it refuses before compiling anything, so the backends
/// run the reference for it (checked on Wgpu by op_suite's quiet-softmax case).
#[test]
fn quiet_softmax_is_refused_by_the_kernel() {
    let quiet = case([1, 2, 2, 70, 77, 64], 2, 64, false);
    let device = Default::default();
    let [query, key, value] = quiet.inputs(1).map(|(values, shape)| tensor::<Cube>(values, shape, &device));
    let problem = AttentionProblem::check(&query, &key, &value, None, &quiet.config())
        .unwrap()
        .with_quiet_softmax(true);
    let primitive = |tensor: &Tensor<Cube, 4>| tensor.clone().into_primitive().tensor();
    match fused_forward_on_path(primitive(&query), primitive(&key), primitive(&value), &problem, KernelTuning::default()) {
        Err(reason) => assert!(reason.to_string().contains("quiet_softmax"), "{reason}"),
        Ok(_) => panic!("the kernel ran a quiet-softmax call"),
    }
}
