//! `--check`: the fused kernel on the benchmark's device against the tensor-op reference on
//! the host (NdArray, f32, on the same values), before any timing.
//!
//! The grid is the timing grid's kernels (f16, head dims 64 and 128, every group size, causal
//! or not: the same compiled variants, on the tensor-core path where the device has it) with
//! odd lengths and GQA, plus bf16 on tensor cores, f32 at 1e-4 and f16 forced onto the
//! portable path, both block row counts, the other head dims, the `Mean` and `SampledKeys`
//! representatives, strided groups and the Gram grouping, and every variant, tiling and causal
//! head group the timing compares (those that compute DistrAttention). Decode shapes (1 to 8 query rows against caches up to 16k keys, grouped-query
//! heads as in SmolLM2 and Llama 3) check split-key decode. A few cases scale the keys up along the sequence (to 5x at its end), so
//! that a row's maximum grows past the tensor-core kernel's rescale threshold in a later tile
//! instead of only in the first. Each case prints a progress line naming
//! the kernel path that ran; the summary gives the largest error per (dtype, path).
//!
//! With `--backward`, [`run_backward_suite`] checks the fused backward's gradients instead,
//! against the reference differentiated by `Autodiff` on the host.

use std::time::Instant;

use burn::tensor::{Distribution, FloatDType, Int, Tensor, TensorData, TensorPrimitive};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeRuntime};
use distr_attn::backends::NdArrayBackend;
use burn::backend::Autodiff;
use distr_attn::kernel::{fused_backward_tuned, fused_forward_on_path, fused_forward_saving_log_sums, kernel_launches, KernelPath, KernelTuning, QueryGradient};
use distr_attn::reference::distr_attention_reference;
use burn_fusion::Fusion;
use distr_attn::{distr_attention, AttentionProblem, DistrAttentionBackend, DistrAttentionConfig, Grouping, Representative};

use crate::{head_group_tuning, tiling_name, Args, Variant};

/// One check: `[batch, heads, kv_heads, seq_q, seq_k]`, the op's configuration (seeded per
/// case), head dim, dtype, the kernel variant with its name, and whether the keys rise along
/// the sequence.
struct Case {
    dims: [usize; 5],
    config: DistrAttentionConfig,
    head_dim: usize,
    dtype: FloatDType,
    tuning: KernelTuning,
    variant: String,
    rising_keys: bool,
}

/// The default grid (see the module doc) plus, for each variant and tiling the timing
/// compares, its specialisations at head dims 64 and 128 for G = 1 and 2, one causal, and one
/// causal with rising keys; for each `--head-groups` entry, causal cases of 48 (batch, head)
/// pairs and three blocks, so that groups such as 3, 16 and 64 (rounded to 48) stay distinct.
fn cases(args: &Args) -> Vec<Case> {
    let block_rows = args.block_rows;
    let other_rows = if block_rows == 64 { 128 } else { 64 };
    let named = |variant: Variant| (variant.tuning(None), variant.name());
    let (default, default_name) = named(Variant::Default);
    let (portable, portable_name) = named(Variant::Portable);
    let case = |head_dim, group_size, causal, dtype, rows, tuning: KernelTuning, name: &String| Case {
        dims: [2, 4, 2, 157, 203],
        config: DistrAttentionConfig::new().with_group_size(group_size).with_block_rows(rows).with_causal(causal),
        head_dim,
        dtype,
        tuning,
        variant: name.clone(),
        rising_keys: false,
    };
    // The paper code's variant, and its two halves.
    let paper = |representative, grouping, case: Case| Case {
        config: case.config.with_representative(representative).with_grouping(grouping),
        ..case
    };
    let mut cases = Vec::new();
    for head_dim in [64, 128] {
        for group_size in [1, 2, 4, 8] {
            for causal in [false, true] {
                cases.push(case(head_dim, group_size, causal, FloatDType::F16, block_rows, default, &default_name));
            }
        }
    }
    cases.push(case(128, 4, false, FloatDType::BF16, block_rows, default, &default_name));
    cases.push(case(64, 1, true, FloatDType::BF16, block_rows, default, &default_name));
    cases.push(case(128, 2, true, FloatDType::F16, other_rows, default, &default_name));
    cases.push(case(64, 8, false, FloatDType::F16, other_rows, default, &default_name));
    cases.push(case(64, 1, false, FloatDType::F16, other_rows, default, &default_name));
    cases.push(case(64, 2, true, FloatDType::F32, block_rows, default, &default_name));
    cases.push(case(64, 2, true, FloatDType::F16, block_rows, portable, &portable_name));
    cases.push(case(128, 1, false, FloatDType::F16, block_rows, portable, &portable_name));
    let (sampled, strided, lsh) = (Representative::SampledKeys, Grouping::LshStrided, Grouping::Lsh);
    for head_dim in [64, 128] {
        for group_size in [2, 4, 8] {
            let plain = case(head_dim, group_size, false, FloatDType::F16, block_rows, default, &default_name);
            cases.push(paper(sampled, lsh, plain));
        }
    }
    cases.push(paper(sampled, lsh, case(64, 2, true, FloatDType::F16, block_rows, default, &default_name)));
    cases.push(paper(sampled, strided, case(128, 2, true, FloatDType::BF16, other_rows, default, &default_name)));
    cases.push(paper(sampled, strided, case(64, 4, false, FloatDType::F16, block_rows, default, &default_name)));
    cases.push(paper(sampled, lsh, case(64, 2, false, FloatDType::F16, block_rows, portable, &portable_name)));
    cases.push(paper(Representative::Sample, strided, case(64, 2, false, FloatDType::F16, block_rows, default, &default_name)));
    cases.push(paper(Representative::Mean, lsh, case(64, 2, true, FloatDType::F16, block_rows, default, &default_name)));
    // Groups chosen from the columns' distances in the pre-pass.
    let gram = Grouping::Gram;
    cases.push(paper(Representative::Mean, gram, case(64, 2, false, FloatDType::F16, block_rows, default, &default_name)));
    cases.push(paper(Representative::Mean, gram, case(128, 2, true, FloatDType::BF16, block_rows, default, &default_name)));
    cases.push(paper(Representative::Sample, gram, case(64, 4, false, FloatDType::F16, other_rows, default, &default_name)));
    let weighted = Grouping::GramKeyWeighted;
    cases.push(paper(Representative::Mean, weighted, case(64, 2, false, FloatDType::F16, block_rows, default, &default_name)));
    cases.push(paper(Representative::Sample, weighted, case(64, 4, true, FloatDType::BF16, block_rows, default, &default_name)));
    cases.push(paper(Representative::Mean, gram, case(128, 8, false, FloatDType::F16, block_rows, portable, &portable_name)));
    for (head_dim, group_size, causal) in [(64, 1, false), (128, 1, true), (64, 2, true), (128, 2, false)] {
        let plain = case(head_dim, group_size, causal, FloatDType::F16, block_rows, default, &default_name);
        cases.push(Case { rising_keys: true, ..plain });
    }
    cases.push(Case { rising_keys: true, ..case(64, 1, false, FloatDType::BF16, block_rows, default, &default_name) });
    for head_dim in [32, 80, 96] {
        cases.push(case(head_dim, 2, false, FloatDType::F16, block_rows, default, &default_name));
        cases.push(case(head_dim, 1, true, FloatDType::F16, block_rows, default, &default_name));
    }
    let decode_shapes = [
        ([1, 9, 3, 1, 4099], 64, 1, true, FloatDType::F16),
        ([1, 9, 3, 1, 4099], 64, 2, true, FloatDType::BF16),
        ([2, 9, 3, 3, 8191], 64, 4, true, FloatDType::F16),
        ([1, 32, 8, 1, 16384], 128, 1, true, FloatDType::BF16),
        ([1, 32, 8, 8, 1000], 128, 2, false, FloatDType::F16),
        ([2, 4, 2, 1, 300], 64, 1, false, FloatDType::F32),
    ];
    for (dims, head_dim, group_size, causal, dtype) in decode_shapes {
        let decode = case(head_dim, group_size, causal, dtype, block_rows, default, &default_name);
        cases.push(Case { dims, ..decode });
    }
    let variants = args
        .variants
        .iter()
        .filter(|variant| variant.is_exact_function() && **variant != Variant::Default)
        .map(|&variant| (variant.tuning(None), variant.name()));
    let tilings = args.tilings.iter().map(|tiling| (Variant::Default.tuning(Some(*tiling)), tiling_name(tiling)));
    for &group in &args.head_groups {
        let (tuning, name) = (head_group_tuning(group), format!("heads{group}"));
        let dims = [3, 16, 4, 300, 330];
        for (head_dim, group_size) in [(64, 1), (128, 2), (64, 4)] {
            cases.push(Case { dims, ..case(head_dim, group_size, true, FloatDType::F16, block_rows, tuning, &name) });
        }
        let rising = case(64, 1, true, FloatDType::BF16, block_rows, tuning, &name);
        cases.push(Case { dims, rising_keys: true, ..rising });
    }
    for (tuning, name) in variants.chain(tilings) {
        for head_dim in [64, 128] {
            for group_size in [1, 2] {
                cases.push(case(head_dim, group_size, false, FloatDType::F16, block_rows, tuning, &name));
            }
        }
        cases.push(case(64, 2, true, FloatDType::F16, block_rows, tuning, &name));
        cases.push(Case { rising_keys: true, ..case(64, 1, true, FloatDType::F16, block_rows, tuning, &name) });
    }
    cases
}

/// Runs the suite; `Err` lists every failing case.
pub fn run_suite<R: CubeRuntime>(device: &R::Device, args: &Args) -> Result<(), String> {
    let mut failures = Vec::new();
    let mut worst: Vec<(String, f64)> = Vec::new();
    let cases = cases(args);
    let mut checked = 0;
    for (index, case) in cases.iter().enumerate() {
        let start = Instant::now();
        let config = case.config.clone().with_seed(index as u64);
        let dtype = case.dtype;
        // f16/bf16: the kernel rounds its output, the reference does not.
        let tolerance = match dtype {
            FloatDType::F32 => 1e-4,
            FloatDType::F16 => 2e-3,
            _ => 1e-2,
        };
        let name = format!(
            "{:?} d={} G={} l={} causal={} {dtype:?} {} {:?} {:?}{}",
            case.dims,
            case.head_dim,
            config.group_size,
            config.block_rows,
            config.causal,
            case.variant,
            config.representative,
            config.grouping,
            if case.rising_keys { " rising keys" } else { "" }
        );
        if !args.selects(&name) {
            continue;
        }
        checked += 1;
        match compare::<R>(device, case.dims, case.head_dim, dtype, &config, case.tuning, case.rising_keys) {
            Ok((error, path)) => {
                let key = format!("{dtype:?} {path:?}");
                // NaN is the worst error of all, and fails.
                match worst.iter_mut().find(|(name, _)| *name == key) {
                    Some((_, largest)) if error.is_nan() || error > *largest => *largest = error,
                    Some(_) => {}
                    None => worst.push((key, error)),
                }
                let passed = error < tolerance;
                let verdict = if passed { "ok" } else { "FAILED" };
                eprintln!(
                    "check {}/{}: {name} {path:?}: relative error {error:.2e} {verdict} ({:.1} s)",
                    index + 1,
                    cases.len(),
                    start.elapsed().as_secs_f64()
                );
                if !passed {
                    failures.push(format!("{name} {path:?}: relative error {error:e}"));
                }
            }
            Err(reason) => {
                eprintln!("check {}/{}: {name}: kernel refused: {reason}", index + 1, cases.len());
                failures.push(format!("{name}: kernel refused: {reason}"));
            }
        }
    }
    for (key, error) in &worst {
        eprintln!("check: largest relative error {key}: {error:.2e}");
    }
    eprintln!("check: {checked} of {} cases, {} failures", cases.len(), failures.len());
    if checked == 0 {
        return Err(format!("--check-only {:?} matches none of the {} cases", args.check_only, cases.len()));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// Relative error of the kernel (in `dtype`) against the f32 host reference on the same
/// (rounded to `dtype`) values, and the kernel path that ran. `rising_keys`: key `j` of `n` is
/// scaled by `1 + 4 j / n`.
fn compare<R: CubeRuntime>(
    device: &R::Device,
    [batch, heads, kv_heads, seq_q, seq_k]: [usize; 5],
    head_dim: usize,
    dtype: FloatDType,
    config: &DistrAttentionConfig,
    tuning: KernelTuning,
    rising_keys: bool,
) -> Result<(f64, KernelPath), String> {
    type B<R> = CubeBackend<R, f32, i32, u32>;
    let random = |shape: [usize; 4]| {
        Tensor::<B<R>, 4>::random(shape, Distribution::Normal(0.0, 1.0), device).cast(dtype)
    };
    let query = random([batch, heads, seq_q, head_dim]);
    let mut key = random([batch, kv_heads, seq_k, head_dim]);
    if rising_keys {
        let ramp = Tensor::<B<R>, 1, Int>::arange(0..seq_k as i64, device).float() * (4.0 / seq_k as f64) + 1.0;
        key = (key.cast(FloatDType::F32) * ramp.reshape([1, 1, seq_k, 1])).cast(dtype);
    }
    let value = random([batch, kv_heads, seq_k, head_dim]);
    let problem = AttentionProblem::check(&query, &key, &value, None, config).map_err(|e| e.to_string())?;
    let primitive = |tensor: &Tensor<B<R>, 4>| -> CubeTensor<R> { tensor.clone().into_primitive().tensor() };
    let (output, path) = fused_forward_on_path(primitive(&query), primitive(&key), primitive(&value), &problem, tuning)
        .map_err(|e| e.to_string())?;
    let actual = host(Tensor::<B<R>, 4>::from_primitive(TensorPrimitive::Float(output)));
    let on_host = |tensor: Tensor<B<R>, 4>| {
        let shape = tensor.dims();
        Tensor::<NdArrayBackend, 4>::from_data(TensorData::new(host(tensor), shape), &Default::default())
    };
    let expected = distr_attention_reference(on_host(query), on_host(key), on_host(value), None, &problem);
    let expected = expected.into_data().to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    Ok((relative_error(&actual, &expected), path))
}

/// `||actual - expected|| / ||expected||`.
fn relative_error(actual: &[f32], expected: &[f32]) -> f64 {
    let (mut difference, mut norm) = (0.0f64, 0.0f64);
    for (&a, &e) in actual.iter().zip(expected) {
        difference += (a as f64 - e as f64).powi(2);
        norm += (e as f64).powi(2);
    }
    (difference / norm).sqrt()
}

fn host<R: CubeRuntime>(tensor: Tensor<CubeBackend<R, f32, i32, u32>, 4>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().to_vec::<f32>().expect("converted to f32")
}

/// `--check --backward`: the op's query, key and value gradients on the device (its fused node
/// under `Autodiff`: the tensor-core backward in f16 / bf16 on devices that have it, grouped
/// calls on their expanded query, the portable kernels elsewhere) against the host reference's
/// autodiff gradients (NdArray, f32, on the same rounded values), for random output gradients:
/// head dims 64, 96 and 128, G = 1, 2 and 4, causal or not, grouped-query heads and odd
/// lengths, every representative, f16, bf16 and f32, and a few cases recorded in a fusion
/// stream (`Fusion`, as the models run: the forward's log-sum-exps are its second output
/// there); then dQ's two routes forced on the kernels (the query side without a mask, the key
/// side with one), as the timing's `:backward-query-side` and `:backward-key-side` run them.
/// `Err` lists the failures.
pub fn run_backward_suite<R: CubeRuntime>(device: &R::Device, args: &Args) -> Result<(), String> {
    let config = |group_size, causal| {
        DistrAttentionConfig::new().with_group_size(group_size).with_block_rows(args.block_rows).with_causal(causal)
    };
    let mut cases = Vec::new();
    for (head_dim, group_size) in [(64, 1), (64, 2), (64, 4), (128, 1), (128, 2), (128, 4)] {
        for causal in [false, true] {
            cases.push((head_dim, config(group_size, causal), FloatDType::F16));
        }
    }
    cases.push((96, config(1, true), FloatDType::F16));
    cases.push((64, config(2, true).with_representative(Representative::Mean), FloatDType::F16));
    cases.push((64, config(2, false).with_representative(Representative::Sample), FloatDType::F16));
    cases.push((
        128,
        config(2, false).with_representative(Representative::SampledKeys).with_grouping(Grouping::LshStrided),
        FloatDType::F16,
    ));
    cases.push((64, config(2, true).with_representative(Representative::Mean).with_grouping(Grouping::Gram), FloatDType::F16));
    cases.push((128, config(2, true), FloatDType::BF16));
    cases.push((64, config(1, true), FloatDType::BF16));
    cases.push((128, config(1, false), FloatDType::BF16));
    cases.push((64, config(1, true), FloatDType::F32));
    cases.push((64, config(2, false), FloatDType::F32));
    let mut cases: Vec<_> = cases.into_iter().map(|(head_dim, config, dtype)| (head_dim, config, dtype, false)).collect();
    cases.push((64, config(1, true), FloatDType::F16, true));
    cases.push((128, config(1, false), FloatDType::BF16, true));
    cases.push((64, config(2, false).with_representative(Representative::Mean), FloatDType::F16, true));
    // `[batch, heads, kv_heads, seq_q, seq_k]`: every case runs on grouped-query heads and odd
    // lengths.
    let short = [2, 4, 2, 157, 203];
    // dQ's routes forced as `:backward-query-side` and `:backward-key-side` time them (the
    // default takes one of the two per call), where the device has the tensor-core backward.
    // The 1000-token cases give the key side's causal grid many key blocks of unequal length.
    let long = [1, 4, 2, 1000, 1000];
    let routes = [
        (64, false, QueryGradient::QuerySide, short),
        (64, true, QueryGradient::KeySide, short),
        (128, true, QueryGradient::KeySide, short),
        (64, true, QueryGradient::KeySide, long),
        (128, true, QueryGradient::KeySide, long),
    ];
    let total = cases.len() + routes.len();
    let mut failures = Vec::new();
    for (index, &(head_dim, ref config, dtype, fusion)) in cases.iter().enumerate() {
        let start = Instant::now();
        let config = config.clone().with_seed(index as u64);
        let name = format!(
            "backward d={head_dim} G={} l={} causal={} {dtype:?} {:?} {:?}{}",
            config.group_size,
            config.block_rows,
            config.causal,
            config.representative,
            config.grouping,
            if fusion { " fusion" } else { "" }
        );
        if !args.selects(&name) {
            continue;
        }
        let label = format!("check {}/{total}", index + 1);
        let result = compare_gradients::<R>(device, short, head_dim, dtype, &config, fusion);
        report_gradients(&label, &name, result, gradient_tolerance(dtype), start, &mut failures);
    }
    for (index, (head_dim, causal, route, shape)) in routes.into_iter().enumerate() {
        let start = Instant::now();
        let config = config(1, causal).with_seed(index as u64);
        let name = format!("backward d={head_dim} G=1 l={} causal={causal} F16 {route:?} N={} forced", config.block_rows, shape[3]);
        if !args.selects(&name) {
            continue;
        }
        let label = format!("check {}/{total}", cases.len() + index + 1);
        let tuning = KernelTuning { query_gradient: Some(route), ..KernelTuning::default() };
        let result = match compare_route_gradients::<R>(device, shape, head_dim, &config, tuning) {
            Err(RouteCheck::Refused(reason)) => {
                eprintln!("{label}: {name}: not on this device ({reason})");
                continue;
            }
            Err(RouteCheck::Failed(reason)) => Err(reason),
            Ok(errors) => Ok(errors),
        };
        report_gradients(&label, &name, result, gradient_tolerance(FloatDType::F16), start, &mut failures);
    }
    eprintln!("check: {total} backward cases, {} failures", failures.len());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// Relative errors of dQ, dK and dV from the op differentiated by `Autodiff` on the device (in
/// `dtype`: the fused node; recorded in a fusion stream where `fusion`) against the host
/// reference's autodiff gradients of `sum(output * grad_output)`. `Err` if the forward and
/// backward kernels did not both run.
fn compare_gradients<R: CubeRuntime>(
    device: &R::Device,
    [batch, heads, kv_heads, seq_q, seq_k]: [usize; 5],
    head_dim: usize,
    dtype: FloatDType,
    config: &DistrAttentionConfig,
    fusion: bool,
) -> Result<[f64; 3], String> {
    type B<R> = CubeBackend<R, f32, i32, u32>;
    let random = |shape: [usize; 4]| Tensor::<B<R>, 4>::random(shape, Distribution::Normal(0.0, 1.0), device).cast(dtype);
    let query = random([batch, heads, seq_q, head_dim]);
    let key = random([batch, kv_heads, seq_k, head_dim]);
    let value = random([batch, kv_heads, seq_k, head_dim]);
    let grad_output = random([batch, heads, seq_q, head_dim]);
    let problem = AttentionProblem::check(&query, &key, &value, None, config).map_err(|e| e.to_string())?;
    let data = [&query, &key, &value, &grad_output].map(|tensor| TensorData::new(host(tensor.clone()), tensor.dims()));
    let actual = if fusion {
        device_gradients::<Fusion<B<R>>>(device, &data, dtype, config)?
    } else {
        device_gradients::<B<R>>(device, &data, dtype, config)?
    };
    reference_errors(&data, &problem, &actual)
}

/// Largest relative error of a gradient check passed in `dtype`.
fn gradient_tolerance(dtype: FloatDType) -> f64 {
    match dtype {
        FloatDType::F32 => 1e-4,
        FloatDType::F16 => 5e-3,
        _ => 3e-2,
    }
}

/// Prints one gradient check's line (after its progress `label`) and records a failure where
/// the largest relative error reaches `tolerance` or the check could not run.
fn report_gradients(label: &str, name: &str, result: Result<[f64; 3], String>, tolerance: f64, start: Instant, failures: &mut Vec<String>) {
    match result {
        Ok(errors) => {
            // A NaN error fails (comparisons with NaN are false).
            let passed = errors.iter().all(|error| *error < tolerance);
            let verdict = if passed { "ok" } else { "FAILED" };
            eprintln!(
                "{label}: {name}: relative errors dQ {:.2e} dK {:.2e} dV {:.2e} {verdict} ({:.1} s)",
                errors[0],
                errors[1],
                errors[2],
                start.elapsed().as_secs_f64()
            );
            if !passed {
                failures.push(format!("{name}: relative errors {errors:?}"));
            }
        }
        Err(reason) => {
            eprintln!("{label}: {name}: {reason}");
            failures.push(format!("{name}: {reason}"));
        }
    }
}

/// Why a forced route's gradients were not compared.
enum RouteCheck {
    /// The kernels refused the call as tuned (no tensor-core backward on the device, or not
    /// this route): nothing to check here.
    Refused(String),
    /// The check itself failed.
    Failed(String),
}

impl RouteCheck {
    fn refused(reason: impl std::fmt::Display) -> Self {
        Self::Refused(reason.to_string())
    }
}

/// As [`compare_gradients`] in f16, for the kernels called directly with `tuning` (the forward
/// saving its log-sum-exps, then the backward).
fn compare_route_gradients<R: CubeRuntime>(
    device: &R::Device,
    [batch, heads, kv_heads, seq_q, seq_k]: [usize; 5],
    head_dim: usize,
    config: &DistrAttentionConfig,
    tuning: KernelTuning,
) -> Result<[f64; 3], RouteCheck> {
    type B<R> = CubeBackend<R, f32, i32, u32>;
    let random = |shape: [usize; 4]| Tensor::<B<R>, 4>::random(shape, Distribution::Normal(0.0, 1.0), device).cast(FloatDType::F16);
    let inputs = [[batch, heads, seq_q, head_dim], [batch, kv_heads, seq_k, head_dim], [batch, kv_heads, seq_k, head_dim], [batch, heads, seq_q, head_dim]].map(random);
    let [query, key, value, grad_output] = &inputs;
    let problem = AttentionProblem::check(query, key, value, None, config).map_err(|e| RouteCheck::Failed(e.to_string()))?;
    let primitive = |tensor: &Tensor<B<R>, 4>| -> CubeTensor<R> { tensor.clone().into_primitive().tensor() };
    let (output, log_sums) = fused_forward_saving_log_sums(primitive(query), primitive(key), primitive(value), &problem).map_err(RouteCheck::refused)?;
    let gradients =
        fused_backward_tuned([query, key, value].map(primitive), output, Some(log_sums), primitive(grad_output), &problem, tuning).map_err(RouteCheck::refused)?;
    let actual = gradients.map(|gradient| host(Tensor::<B<R>, 4>::from_primitive(TensorPrimitive::Float(gradient)))).to_vec();
    let data = inputs.each_ref().map(|tensor| TensorData::new(host(tensor.clone()), tensor.dims()));
    reference_errors(&data, &problem, &actual).map_err(RouteCheck::Failed)
}

/// Relative errors of `actual` (dQ, dK, dV) against the host reference's autodiff gradients of
/// `sum(output * grad_output)` on `data` (query, key, value, output gradient).
fn reference_errors(data: &[TensorData; 4], problem: &AttentionProblem, actual: &[Vec<f32>]) -> Result<[f64; 3], String> {
    type Host = Autodiff<NdArrayBackend>;
    let on_host = |data: &TensorData| Tensor::<Host, 4>::from_data(data.clone(), &Default::default());
    let tracked = [&data[0], &data[1], &data[2]].map(|data| on_host(data).require_grad());
    let [q, k, v] = tracked.clone();
    let output = distr_attention_reference(q, k, v, None, problem);
    let gradients = (output * on_host(&data[3])).sum().backward();
    let mut errors = [0.0; 3];
    for (index, tensor) in tracked.iter().enumerate() {
        let expected = tensor.grad(&gradients).ok_or("no reference gradient")?;
        let expected = expected.into_data().to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        errors[index] = relative_error(&actual[index], &expected);
    }
    Ok(errors)
}

/// dQ, dK and dV of `sum(output * grad_output)` (`data`: query, key, value, output gradient,
/// already rounded to `dtype`) from the op differentiated by `Autodiff<D>` on the device. `Err`
/// if the forward and backward kernels did not both run.
fn device_gradients<D: DistrAttentionBackend>(
    device: &D::Device,
    data: &[TensorData; 4],
    dtype: FloatDType,
    config: &DistrAttentionConfig,
) -> Result<Vec<Vec<f32>>, String> {
    let tensor = |data: &TensorData| Tensor::<Autodiff<D>, 4>::from_data(data.clone(), device).cast(dtype);
    let launches = kernel_launches();
    let tracked = [&data[0], &data[1], &data[2]].map(|data| tensor(data).require_grad());
    let [q, k, v] = tracked.clone();
    let output = distr_attention(q, k, v, None, config).map_err(|e| e.to_string())?;
    let gradients = (output * tensor(&data[3])).sum().backward();
    let gradients = tracked
        .iter()
        .map(|tensor| {
            let gradient = tensor.grad(&gradients).ok_or("no device gradient")?;
            gradient.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| format!("{e:?}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if kernel_launches() < launches + 2 {
        return Err("the fused forward and backward did not both run".into());
    }
    Ok(gradients)
}
