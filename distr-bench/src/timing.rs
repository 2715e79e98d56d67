//! The timing grid: median milliseconds over repeated, synchronised runs on random normal
//! inputs, and exact-equivalent TFLOP/s (`4 B H N^2 d / time`, halved when causal).

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Distribution, FloatDType, Tensor};
use burn_cubecl::{CubeBackend, CubeRuntime};
use distr_attn::kernel::{fused_forward_on_path, kernel_launches, KernelTuning};
use distr_attn::{distr_attention, AttentionProblem, DistrAttentionConfig};

use crate::{tiling_name, Args, StorageDtype};

/// The runtime the benchmark is built for.
#[cfg(feature = "cuda")]
pub type Bench = cubecl::cuda::CudaRuntime;
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Bench = cubecl::wgpu::WgpuRuntime;

/// One timed configuration.
#[derive(Debug, serde::Serialize)]
struct Measurement {
    method: String,
    batch: usize,
    heads: usize,
    seq: usize,
    head_dim: usize,
    dtype: StorageDtype,
    causal: bool,
    block_rows: usize,
    /// Which kernel path ran (our kernel only).
    path: Option<String>,
    runs: usize,
    median_ms: f64,
    tflops: f64,
}

/// Times every (length, head dim, causal) of `args` for each method, printing JSON lines as
/// they come and the table at the end.
pub fn run_grid<R: CubeRuntime>(args: &Args, device: &R::Device) {
    type B<R> = CubeBackend<R, f32, i32, u32>;
    let dtype = match args.dtype {
        StorageDtype::F16 => FloatDType::F16,
        StorageDtype::Bf16 => FloatDType::BF16,
        StorageDtype::F32 => FloatDType::F32,
    };
    let mut rows = Vec::new();
    for &seq in &args.lengths {
        for &head_dim in &args.head_dims {
            for &causal in &args.causal {
                let shape = [args.batch, args.heads, seq, head_dim];
                let random = || Tensor::<B<R>, 4>::random(shape, Distribution::Normal(0.0, 1.0), device).cast(dtype);
                let (query, key, value) = (random(), random(), random());
                let mut methods: Vec<(String, Option<String>, Box<dyn Fn()>)> = Vec::new();
                for &group_size in &args.group_sizes {
                    let config = DistrAttentionConfig::new()
                        .with_group_size(group_size)
                        .with_block_rows(args.block_rows)
                        .with_causal(causal);
                    let name = if group_size == 1 { "exact_kernel".to_string() } else { format!("distr_g{group_size}") };
                    for &tiling in &args.tilings {
                        let tuning = KernelTuning { portable_only: false, tiling: Some(tiling) };
                        let path = kernel_path(&query, &key, &value, &config, tuning);
                        if path != "TensorCore" {
                            eprintln!("skipping {name}@{}: {path}", tiling_name(&tiling));
                            continue;
                        }
                        let problem = AttentionProblem::check(&query, &key, &value, None, &config).expect("validated shapes");
                        let [query, key, value] = [&query, &key, &value].map(|tensor| tensor.clone().into_primitive().tensor());
                        methods.push((
                            format!("{name}@{}", tiling_name(&tiling)),
                            Some(path),
                            Box::new(move || {
                                let launch = fused_forward_on_path(query.clone(), key.clone(), value.clone(), &problem, tuning);
                                drop(launch.expect("the tiling was checked when its path was read"));
                            }),
                        ));
                    }
                    let path = kernel_path(&query, &key, &value, &config, KernelTuning::default());
                    let (query, key, value) = (query.clone(), key.clone(), value.clone());
                    methods.push((
                        name,
                        Some(path),
                        Box::new(move || {
                            let before = kernel_launches();
                            let output = distr_attention(query.clone(), key.clone(), value.clone(), None, &config);
                            drop(output.expect("validated shapes"));
                            assert!(kernel_launches() > before, "the fused kernel was not launched");
                        }),
                    ));
                }
                if seq <= args.burn_max_len {
                    let (query, key, value) = (query.clone(), key.clone(), value.clone());
                    let options = AttentionModuleOptions { is_causal: causal, ..Default::default() };
                    methods.push((
                        "burn_attention".into(),
                        None,
                        Box::new(move || drop(attention(query.clone(), key.clone(), value.clone(), None, None, options))),
                    ));
                }
                for (method, path, run) in methods {
                    eprintln!("timing {method} N={seq} d={head_dim} causal={causal} ...");
                    let (median_ms, runs) = median_ms(&run, || {
                        let _ = B::<R>::sync(device);
                    }, args.budget_ms);
                    let flops = 4.0 * (args.batch * args.heads * head_dim) as f64 * (seq * seq) as f64
                        / if causal { 2.0 } else { 1.0 };
                    let row = Measurement {
                        method,
                        batch: args.batch,
                        heads: args.heads,
                        seq,
                        head_dim,
                        dtype: args.dtype,
                        causal,
                        block_rows: args.block_rows,
                        path,
                        runs,
                        median_ms,
                        tflops: flops / (median_ms * 1e-3) / 1e12,
                    };
                    if args.json {
                        println!("{}", serde_json::to_string(&row).expect("plain struct"));
                    }
                    eprintln!("{:>15} N={seq:>5} d={head_dim:>3} causal={causal:<5} {median_ms:>9.3} ms {:>7.1} TFLOP/s {}", row.method, row.tflops, row.path.as_deref().unwrap_or(""));
                    rows.push(row);
                }
            }
        }
    }
    print_table(&rows);
}

/// The kernel path these inputs take with `tuning` (one untimed launch).
fn kernel_path<R: CubeRuntime>(
    query: &Tensor<CubeBackend<R, f32, i32, u32>, 4>,
    key: &Tensor<CubeBackend<R, f32, i32, u32>, 4>,
    value: &Tensor<CubeBackend<R, f32, i32, u32>, 4>,
    config: &DistrAttentionConfig,
    tuning: KernelTuning,
) -> String {
    let problem = AttentionProblem::check(query, key, value, None, config).expect("validated shapes");
    let primitive = |tensor: &Tensor<CubeBackend<R, f32, i32, u32>, 4>| tensor.clone().into_primitive().tensor();
    match fused_forward_on_path(primitive(query), primitive(key), primitive(value), &problem, tuning) {
        Ok((_, path)) => format!("{path:?}"),
        Err(reason) => format!("refused: {reason}"),
    }
}

/// Two warm-up runs (compilation, autotune), then runs until `budget_ms` (at least 5, at
/// most 50), each synchronised; the median and the number of runs.
fn median_ms(run: &dyn Fn(), sync: impl Fn(), budget_ms: f64) -> (f64, usize) {
    for _ in 0..2 {
        run();
        sync();
    }
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 5 || (times.len() < 50 && start.elapsed().as_secs_f64() * 1e3 < budget_ms) {
        let begin = Instant::now();
        run();
        sync();
        times.push(begin.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times.len())
}

/// Median ms and TFLOP/s per method, one line per (N, d, causal), with each DistrAttention
/// speedup over our exact kernel.
fn print_table(rows: &[Measurement]) {
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
        line += &format!(" {} | {} |", ratio("exact_kernel", "burn_attention"), ratio("distr_g2", "exact_kernel"));
        eprintln!("{line}");
    }
}
