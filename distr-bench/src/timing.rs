//! The timing grid: milliseconds per call on random normal inputs, and exact-equivalent
//! TFLOP/s (`4 B H Nq Nk d / time`, halved when causal with `Nq = Nk`; times 2.5 for a
//! backward and 3.5 for a forward and backward, FlashAttention-2's accounting).
//!
//! Each sample launches a batch of back-to-back calls (enough for about 10 ms of work) between
//! two device synchronisations and divides by the batch: the device never idles between
//! calls, so a sample is the device's time per call (pre-pass, forward kernel and any per-call
//! upload included), not a host round trip. The median of the samples is reported.

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Distribution, FloatDType, Tensor};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeRuntime};
use burn::backend::Autodiff;
use distr_attn::kernel::{
    check_backward, fused_backward_tuned, fused_forward_on_path, fused_forward_saving_log_sums, grouping_pre_pass, kernel_launches, KernelTuning, QueryGradient,
    TensorCoreTiling,
};
use distr_attn::reference::{distr_attention_reference, expanded_query};
use distr_attn::{distr_attention, AttentionProblem, DistrAttentionConfig, Representative, DECODE_QUERY_ROWS};

use crate::{head_group_tuning, tiling_name, Args, StorageDtype, Variant};

/// The runtime the benchmark is built for.
#[cfg(feature = "cuda")]
pub type Bench = cubecl::cuda::CudaRuntime;
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Bench = cubecl::wgpu::WgpuRuntime;

type B<R> = CubeBackend<R, f32, i32, u32>;

/// One timed configuration.
#[derive(Debug, serde::Serialize)]
struct Measurement {
    method: String,
    group_size: Option<usize>,
    /// DistrAttention's representative (G > 1).
    representative: Option<Representative>,
    variant: Option<String>,
    tiling: Option<String>,
    /// Causal calls: (batch, head) pairs launched together (`--head-groups`).
    head_group: Option<usize>,
    batch: usize,
    heads: usize,
    kv_heads: usize,
    /// Keys (and query rows, unless `seq_q` says otherwise).
    seq: usize,
    seq_q: usize,
    head_dim: usize,
    dtype: StorageDtype,
    causal: bool,
    block_rows: usize,
    /// Which kernel path ran (our kernels only).
    path: Option<String>,
    /// Calls timed, over all samples.
    calls: usize,
    median_ms: f64,
    tflops: f64,
    /// Device memory the pool holds after one call, freed memory returned first, inputs
    /// included: an upper bound of the call's peak that grows with what it allocated.
    reserved_mib: f64,
}

/// A method to time: its description and one call.
struct Method {
    name: String,
    group_size: Option<usize>,
    representative: Option<Representative>,
    variant: Option<Variant>,
    tiling: Option<TensorCoreTiling>,
    head_group: Option<usize>,
    path: Option<String>,
    /// FLOPs of one call in forward passes: 1, 2.5 (backward) or 3.5 (both).
    passes: f64,
    run: Box<dyn Fn()>,
}

/// Times every (length, head dim, causal) of `args` for each method, printing JSON lines as
/// they come and the table at the end.
pub fn run_grid<R: CubeRuntime>(args: &Args, device: &R::Device) {
    let dtype = float_dtype(args.dtype);
    let kv_heads = args.kv_heads.unwrap_or(args.heads);
    let mut rows = Vec::new();
    for &seq in &args.lengths {
        let seq_q = args.query_rows.unwrap_or(seq);
        for &head_dim in &args.head_dims {
            for &causal in &args.causal {
                let random = |heads, length| {
                    let shape = [args.batch, heads, length, head_dim];
                    Tensor::<B<R>, 4>::random(shape, Distribution::Normal(0.0, 1.0), device).cast(dtype)
                };
                let (query, key, value) = (random(args.heads, seq_q), random(kv_heads, seq), random(kv_heads, seq));
                let mut methods = Vec::new();
                for &group_size in args.group_sizes.iter().filter(|&&group| head_dim % group == 0) {
                    let representatives = if group_size == 1 { &args.representatives[..1] } else { &args.representatives };
                    let groupings = if group_size == 1 { &args.groupings[..1] } else { &args.groupings };
                    for &representative in representatives {
                        for &grouping in groupings {
                            let config = DistrAttentionConfig::new()
                                .with_group_size(group_size)
                                .with_block_rows(args.block_rows)
                                .with_causal(causal)
                                .with_representative(representative)
                                .with_grouping(grouping);
                            let name = MethodName {
                                representative: representative != args.representatives[0],
                                grouping: grouping != args.groupings[0],
                            };
                            if args.backward {
                                methods.extend(backward_methods(args, &query, &key, &value, &config, name));
                            } else {
                                methods.extend(kernel_methods(args, &query, &key, &value, &config, name));
                            }
                        }
                    }
                }
                if seq_q <= DECODE_QUERY_ROWS && !args.backward {
                    let config = DistrAttentionConfig::new().with_block_rows(args.block_rows).with_causal(causal);
                    let problem = AttentionProblem::check(&query, &key, &value, None, &config).expect("validated shapes");
                    let (query, key, value) = (query.clone(), key.clone(), value.clone());
                    methods.push(Method {
                        name: "tensor_ops".into(),
                        group_size: Some(1),
                        representative: None,
                        variant: None,
                        tiling: None,
                        head_group: None,
                        path: None,
                        passes: 1.0,
                        run: Box::new(move || {
                            drop(distr_attention_reference(query.clone(), key.clone(), value.clone(), None, &problem))
                        }),
                    });
                }
                if seq <= args.burn_max_len && seq_q == seq && kv_heads == args.heads && !args.backward {
                    let (query, key, value) = (query.clone(), key.clone(), value.clone());
                    let options = AttentionModuleOptions { is_causal: causal, ..Default::default() };
                    methods.push(Method {
                        name: "burn_attention".into(),
                        group_size: None,
                        representative: None,
                        variant: None,
                        tiling: None,
                        head_group: None,
                        path: None,
                        passes: 1.0,
                        run: Box::new(move || drop(attention(query.clone(), key.clone(), value.clone(), None, None, options))),
                    });
                }
                for method in methods {
                    eprintln!("timing {} Nq={seq_q} N={seq} d={head_dim} causal={causal} ...", method.name);
                    let reserved_mib = reserved_after_one_call::<R>(&method.run, device);
                    let (median_ms, calls) = median_ms_per_call(&method.run, || {
                        let _ = B::<R>::sync(device);
                    }, args.budget_ms);
                    let flops = method.passes * 4.0 * (args.batch * args.heads * head_dim) as f64 * (seq_q * seq) as f64
                        / if causal && seq_q == seq { 2.0 } else { 1.0 };
                    let row = Measurement {
                        method: method.name,
                        group_size: method.group_size,
                        representative: method.representative,
                        variant: method.variant.map(Variant::name),
                        tiling: method.tiling.as_ref().map(tiling_name),
                        head_group: method.head_group,
                        batch: args.batch,
                        heads: args.heads,
                        kv_heads,
                        seq,
                        seq_q,
                        head_dim,
                        dtype: args.dtype,
                        causal,
                        block_rows: args.block_rows,
                        path: method.path,
                        calls,
                        median_ms,
                        tflops: flops / (median_ms * 1e-3) / 1e12,
                        reserved_mib,
                    };
                    if args.json {
                        println!("{}", serde_json::to_string(&row).expect("plain struct"));
                    }
                    eprintln!(
                        "{:>40} Nq={seq_q:>5} N={seq:>5} d={head_dim:>3} causal={causal:<5} {median_ms:>9.3} ms {:>7.1} TFLOP/s {reserved_mib:>9.0} MiB {}",
                        row.method,
                        row.tflops,
                        row.path.as_deref().unwrap_or("")
                    );
                    rows.push(row);
                }
            }
        }
    }
    print_table(&rows, if args.backward { ":backward" } else { "" });
}

pub fn float_dtype(dtype: StorageDtype) -> FloatDType {
    match dtype {
        StorageDtype::F16 => FloatDType::F16,
        StorageDtype::Bf16 => FloatDType::BF16,
        StorageDtype::F32 => FloatDType::F32,
    }
}

/// The kernel methods of one group size and representative: the public op (what models run),
/// then each requested variant with the default tiling and the default variant with each
/// requested tiling, and the pre-pass alone. Variants the kernel refuses here are reported and
/// skipped. `name`: which options the method's name spells out.
fn kernel_methods<R: CubeRuntime>(
    args: &Args,
    query: &Tensor<B<R>, 4>,
    key: &Tensor<B<R>, 4>,
    value: &Tensor<B<R>, 4>,
    config: &DistrAttentionConfig,
    name: MethodName,
) -> Vec<Method> {
    let group_size = config.group_size;
    let representative = (group_size > 1).then_some(config.representative);
    let base = method_base(config, name);
    let problem = AttentionProblem::check(query, key, value, None, config).expect("validated shapes");
    let primitive = |tensor: &Tensor<B<R>, 4>| tensor.clone().into_primitive().tensor();
    let mut methods = Vec::new();
    let (q, k, v, op_config) = (query.clone(), key.clone(), value.clone(), config.clone());
    methods.push(Method {
        name: base.clone(),
        group_size: Some(group_size),
        representative,
        variant: Some(Variant::Default),
        tiling: None,
        head_group: None,
        path: Some(kernel_path(query, key, value, &problem, KernelTuning::default())),
        passes: 1.0,
        run: Box::new(move || {
            let before = kernel_launches();
            drop(distr_attention(q.clone(), k.clone(), v.clone(), None, &op_config).expect("validated shapes"));
            assert!(kernel_launches() > before, "the fused kernel was not launched");
        }),
    });
    let variants = args
        .variants
        .iter()
        .filter(|variant| **variant != Variant::Default && (group_size > 1 || !variant.grouped_only()))
        .map(|&variant| (variant, None, None));
    let tilings = args.tilings.iter().map(|&tiling| (Variant::Default, Some(tiling), None));
    let head_groups = args.head_groups.iter().filter(|_| config.causal).map(|&group| (Variant::Default, None, Some(group)));
    for (variant, tiling, head_group) in variants.chain(tilings).chain(head_groups) {
        let tuning = match head_group {
            Some(group) => head_group_tuning(group),
            None => variant.tuning(tiling),
        };
        let path = kernel_path(query, key, value, &problem, tuning);
        let mut name = base.clone();
        if variant != Variant::Default {
            name += &format!("+{}", variant.name());
        }
        if let Some(tiling) = &tiling {
            name += &format!("@{}", tiling_name(tiling));
        }
        if let Some(group) = head_group {
            name += &format!("@heads{group}");
        }
        if path.starts_with("refused") {
            eprintln!("skipping {name}: {path}");
            continue;
        }
        let (q, k, v, problem) = (primitive(query), primitive(key), primitive(value), problem.clone());
        methods.push(Method {
            name,
            group_size: Some(group_size),
            representative,
            variant: Some(variant),
            tiling,
            head_group,
            path: Some(path),
            passes: 1.0,
            run: Box::new(move || {
                let launch = fused_forward_on_path(q.clone(), k.clone(), v.clone(), &problem, tuning);
                drop(launch.expect("the variant was checked when its path was read"));
            }),
        });
    }
    if args.grouping_alone && group_size > 1 {
        let (q, k, problem) = (primitive(query), primitive(key), problem.clone());
        methods.push(Method {
            name: format!("{base}+grouping-alone"),
            group_size: Some(group_size),
            representative,
            variant: None,
            tiling: None,
            head_group: None,
            path: None,
            passes: 1.0,
            run: Box::new(move || grouping_pre_pass(q.clone(), k.clone(), &problem).expect("validated shapes")),
        });
    }
    methods
}

/// The training methods of one group size and representative (`--backward`): the fused
/// backward alone on a saved forward and a random output gradient (`:backward`, what
/// PyTorch's FlashAttention-2 backward compares with), a forward and backward through
/// `Autodiff` (`:train`, output gradient ones), and up to `--reference-max-len` the same
/// through the tensor-op reference (`:reference-train`). Grouped calls whose backward runs on
/// the expanded query time that; calls no fused backward takes (see
/// `kernels_cubecl::config::MAX_BACKWARD_FLOATS_PER_UNIT`) time the reference alone.
fn backward_methods<R: CubeRuntime>(
    args: &Args,
    query: &Tensor<B<R>, 4>,
    key: &Tensor<B<R>, 4>,
    value: &Tensor<B<R>, 4>,
    config: &DistrAttentionConfig,
    name: MethodName,
) -> Vec<Method> {
    let group_size = config.group_size;
    let representative = (group_size > 1).then_some(config.representative);
    let base = method_base(config, name);
    let problem = AttentionProblem::check(query, key, value, None, config).expect("validated shapes");
    let primitive = |tensor: &Tensor<B<R>, 4>| tensor.clone().into_primitive().tensor();
    let method = |name: String, passes: f64, run: Box<dyn Fn()>| Method {
        name,
        group_size: Some(group_size),
        representative,
        variant: None,
        tiling: None,
        head_group: None,
        path: None,
        passes,
        run,
    };
    let mut methods = Vec::new();
    if query.dims()[2] <= args.reference_max_len {
        let (tracked, problem) = (track(query, key, value), problem.clone());
        methods.push(method(format!("{base}:reference-train"), 3.5, Box::new(move || {
            let [query, key, value] = tracked.clone();
            drop(distr_attention_reference(query, key, value, None, &problem).backward());
        })));
    }
    // Where the backward kernels do not group as the call does (a grouping the pre-pass does
    // not form), the node runs on the expanded query: `:backward` times that exact backward
    // on a saved expanded query, `:train` the whole path (the expansion included).
    let (dtype, device) = (query.dtype(), query.device());
    let (backward_problem, backward_query) = match check_backward::<R>(&problem, dtype, &device) {
        Ok(()) => (problem.clone(), query.clone()),
        Err(reason) if group_size > 1 && check_backward::<R>(&problem.expanded(), dtype, &device).is_ok() => {
            eprintln!("{base}: the backward runs on the expanded query ({reason})");
            (problem.expanded(), expanded_query(query.clone(), key.clone(), &problem).cast(dtype))
        }
        Err(reason) => {
            eprintln!("skipping {base}:backward and {base}:train: {reason}");
            return methods;
        }
    };
    // As `Autodiff` runs it: with the forward's log-sum-exps where the forward saves them,
    // and then also without (`:backward-own-log-sums`), to measure what saving them buys.
    let (output, log_sums) = match fused_forward_saving_log_sums(primitive(&backward_query), primitive(key), primitive(value), &backward_problem) {
        Ok((output, log_sums)) => (output, Some(log_sums)),
        Err(_) => {
            let (output, _) =
                fused_forward_on_path(primitive(&backward_query), primitive(key), primitive(value), &backward_problem, KernelTuning::default())
                    .expect("validated shapes");
            (output, None)
        }
    };
    let grad_output = Tensor::<B<R>, 4>::random(query.dims(), Distribution::Normal(0.0, 1.0), &device).cast(dtype);
    let inputs = [primitive(&backward_query), primitive(key), primitive(value)];
    let grad_output = primitive(&grad_output);
    let backward = |log_sums: Option<CubeTensor<R>>, query_gradient: Option<QueryGradient>| {
        let (inputs, output, grad_output, saved) = (inputs.clone(), output.clone(), grad_output.clone(), backward_problem.clone());
        let tuning = KernelTuning { query_gradient, ..KernelTuning::default() };
        Box::new(move || {
            let gradients = fused_backward_tuned(inputs.clone(), output.clone(), log_sums.clone(), grad_output.clone(), &saved, tuning);
            drop(gradients.expect("the backward takes what the forward took"));
        }) as Box<dyn Fn()>
    };
    // Where the forward saves them, both of dQ's routes are also timed on them, forced
    // (`:backward-query-side`, `:backward-key-side` where the call can take it), so that each
    // call shows which one the default (`:backward`) should take.
    if log_sums.is_some() {
        methods.push(method(format!("{base}:backward-own-log-sums"), 2.5, backward(None, None)));
        for (route, forced) in [("query-side", QueryGradient::QuerySide), ("key-side", QueryGradient::KeySide)] {
            let tuning = KernelTuning { query_gradient: Some(forced), ..KernelTuning::default() };
            match fused_backward_tuned(inputs.clone(), output.clone(), log_sums.clone(), grad_output.clone(), &backward_problem, tuning) {
                Ok(_) => methods.push(method(format!("{base}:backward-{route}"), 2.5, backward(log_sums.clone(), Some(forced)))),
                Err(reason) => eprintln!("skipping {base}:backward-{route}: {reason}"),
            }
        }
    }
    methods.push(method(format!("{base}:backward"), 2.5, backward(log_sums, None)));
    let (inputs, train_config) = (track(query, key, value), config.clone());
    methods.push(method(format!("{base}:train"), 3.5, Box::new(move || {
        let before = kernel_launches();
        let [query, key, value] = inputs.clone();
        let output = distr_attention(query, key, value, None, &train_config).expect("validated shapes");
        drop(output.backward());
        assert!(kernel_launches() >= before + 2, "the fused forward and backward were not both launched");
    })));
    methods
}

/// The inputs as `Autodiff` leaves that require their gradient.
fn track<R: CubeRuntime>(query: &Tensor<B<R>, 4>, key: &Tensor<B<R>, 4>, value: &Tensor<B<R>, 4>) -> [Tensor<Autodiff<B<R>>, 4>; 3] {
    [query, key, value].map(|tensor| Tensor::<Autodiff<B<R>>, 4>::from_inner(tensor.clone()).require_grad())
}

/// Device memory reserved after one call of `run`, in MiB, with the pool's free pages
/// returned first (see [`Measurement::reserved_mib`]).
fn reserved_after_one_call<R: CubeRuntime>(run: &dyn Fn(), device: &R::Device) -> f64 {
    let client = R::client(device);
    let _ = B::<R>::sync(device);
    client.memory_cleanup();
    run();
    let _ = B::<R>::sync(device);
    client.memory_usage().map_or(f64::NAN, |usage| usage.bytes_reserved as f64 / (1024.0 * 1024.0))
}

/// Which of a method's options its name spells out: those other than the first given.
#[derive(Clone, Copy)]
struct MethodName {
    representative: bool,
    grouping: bool,
}

/// A method's name before its variant: `exact_kernel` or `distr_g<G>`, with the representative
/// appended when either option is named and the grouping when it is.
fn method_base(config: &DistrAttentionConfig, name: MethodName) -> String {
    let group_size = config.group_size;
    let mut base = if group_size == 1 { "exact_kernel".to_string() } else { format!("distr_g{group_size}") };
    if name.representative || name.grouping {
        base += &format!(":{}", cli_name(config.representative));
    }
    if name.grouping {
        base += &format!(":{}", cli_name(config.grouping));
    }
    base
}

/// The command-line spelling of an option's value (a representative, a grouping).
fn cli_name(value: impl clap::ValueEnum) -> String {
    value.to_possible_value().map(|value| value.get_name().to_string()).unwrap_or_default()
}

/// The kernel path these inputs take with `tuning` (one untimed launch), or why it was refused.
fn kernel_path<R: CubeRuntime>(
    query: &Tensor<B<R>, 4>,
    key: &Tensor<B<R>, 4>,
    value: &Tensor<B<R>, 4>,
    problem: &AttentionProblem,
    tuning: KernelTuning,
) -> String {
    let primitive = |tensor: &Tensor<B<R>, 4>| tensor.clone().into_primitive().tensor();
    match fused_forward_on_path(primitive(query), primitive(key), primitive(value), problem, tuning) {
        Ok((_, path)) => format!("{path:?}"),
        Err(reason) => format!("refused: {reason}"),
    }
}

/// Two warm-up calls (compilation, autotune), then samples of back-to-back batches (see the
/// module doc) until `budget_ms` (at least 5 samples, at most 30); the median time per call
/// and the number of calls timed.
fn median_ms_per_call(run: &dyn Fn(), sync: impl Fn(), budget_ms: f64) -> (f64, usize) {
    for _ in 0..2 {
        run();
        sync();
    }
    let single = Instant::now();
    run();
    sync();
    let single_ms = single.elapsed().as_secs_f64() * 1e3;
    let batch = ((10.0 / single_ms).ceil() as usize).clamp(1, 200);
    let start = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < 5 || (samples.len() < 30 && start.elapsed().as_secs_f64() * 1e3 < budget_ms) {
        let begin = Instant::now();
        for _ in 0..batch {
            run();
        }
        sync();
        samples.push(begin.elapsed().as_secs_f64() * 1e3 / batch as f64);
    }
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples.len() * batch)
}

/// Median ms and TFLOP/s of the default methods, one line per (N, d, causal), with each
/// DistrAttention speedup over our exact kernel (of the methods named with `suffix`).
fn print_table(rows: &[Measurement], suffix: &str) {
    let mut methods: Vec<&str> = Vec::new();
    for row in rows {
        if !methods.contains(&row.method.as_str()) {
            methods.push(&row.method);
        }
    }
    let mut header = String::from("| N | d | causal |");
    for method in &methods {
        header += &format!(" {method} ms (TFLOP/s) |");
    }
    header += " exact / burn | G=2 speedup vs exact |";
    eprintln!("\n{header}");
    eprintln!("|{}", " --- |".repeat(methods.len() + 5));
    let mut keys: Vec<(usize, usize, bool)> = Vec::new();
    for row in rows {
        let key = (row.seq, row.head_dim, row.causal);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for (seq, head_dim, causal) in keys {
        let find = |method: &str| {
            rows.iter()
                .find(|row| row.method == method && row.seq == seq && row.head_dim == head_dim && row.causal == causal)
        };
        let mut line = format!("| {seq} | {head_dim} | {causal} |");
        for method in &methods {
            line += &match find(method) {
                Some(row) => format!(" {:.3} ({:.1}) |", row.median_ms, row.tflops),
                None => " - |".into(),
            };
        }
        let ratio = |a: &str, b: &str| match (find(a), find(b)) {
            (Some(a), Some(b)) => format!("{:.2}x", b.median_ms / a.median_ms),
            _ => "-".into(),
        };
        let (exact, grouped) = (format!("exact_kernel{suffix}"), format!("distr_g2{suffix}"));
        line += &format!(" {} | {} |", ratio("exact_kernel", "burn_attention"), ratio(&grouped, &exact));
        eprintln!("{line}");
    }
}
