//! Dispatch to the fused CubeCL kernels (`kernels-cubecl`): maps a validated
//! [`AttentionProblem`] onto the kernels' options, keeps the LSH hyperplanes on the device,
//! allocates the output and launches.
//!
//! Calls the kernels do not cover return an error naming why; the backend impls then log it
//! and run the tensor-op reference, so an unsupported call is slow, never wrong.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use burn::tensor::DType;
use burn::tensor::{Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::ops::permute;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use burn_cubecl::cubecl::prelude::{ComputeClient, StorageType};
use kernels_cubecl::{
    launch_backward, launch_forward, launch_grouping, AttentionBindings, BackwardBindings, ForwardOptions, GroupLayout, Hyperplanes, KernelError, Representative,
};

pub use kernels_cubecl::{
    CopyStrategy, FragmentLoads, KernelPath, KeyFusion, Permutation, QueryGradient, Strategy, TensorCoreTiling, TensorCoreVariant,
    SUPPORTED_BLOCK_ROWS, SUPPORTED_GROUP_SIZES, SUPPORTED_HEAD_DIMS,
};

use crate::{hyperplanes, AttentionProblem, Grouping};

static KERNEL_LAUNCHES: AtomicUsize = AtomicUsize::new(0);

/// How many times the fused kernel has been launched in this process: tests and benchmarks
/// read it to prove that a call took the kernel path rather than the reference.
pub fn kernel_launches() -> usize {
    KERNEL_LAUNCHES.load(Ordering::SeqCst)
}

/// Runs the fused forward kernel on `[batch, heads, seq, dim]` tensors of one CubeCL runtime.
/// The output is `[batch, heads, seq_q, value_dim]` laid out as `[batch, seq_q, heads,
/// value_dim]` rows (strides `[seq_q * heads * value_dim, value_dim, heads * value_dim, 1]`),
/// so that merging the heads is a view; a caller that binds its handle to a kernel of its own
/// must read it through those strides.
///
/// Errors (nothing launched) for what the kernel does not cover: f64, the groupings other than
/// [`Grouping::Lsh`], [`Grouping::LshStrided`], [`Grouping::Gram`] and [`Grouping::GramKeyWeighted`] (with `Sample` or `Mean`),
/// the `Projected` representative, quiet softmax, and the head dims, group
/// sizes and block rows outside its comptime specialisations.
pub fn fused_forward<R: CubeRuntime>(
    query: CubeTensor<R>,
    key: CubeTensor<R>,
    value: CubeTensor<R>,
    problem: &AttentionProblem,
) -> Result<CubeTensor<R>, KernelError> {
    fused_forward_on_path(query, key, value, problem, KernelTuning::default()).map(|(output, _)| output)
}

/// Where a call's LSH hyperplanes come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HyperplaneSource {
    /// Uploaded once per (device, seed, num_projections, block_rows) and kept.
    #[default]
    Cached,
    /// Generated on the host and uploaded on every call: what the cache saves, measured.
    PerCall,
}

/// Which variant of the fused kernels to launch. Models take the default; the benchmark and
/// its on-device check vary it to compare paths, tilings and stages on one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelTuning {
    pub strategy: Strategy,
    pub hyperplanes: HyperplaneSource,
    /// [`Permutation::Lsh`] but to time the hashing and the sort by their absence.
    pub permutation: Permutation,
    /// Where the tensor-core backward forms dQ ([`ForwardOptions::query_gradient`]); `None`:
    /// the fastest the call allows.
    pub query_gradient: Option<QueryGradient>,
}

/// [`fused_forward`] with an explicit [`KernelTuning`], also returning which kernel ran (the
/// output laid out as [`fused_forward`]'s).
pub fn fused_forward_on_path<R: CubeRuntime>(
    query: CubeTensor<R>,
    key: CubeTensor<R>,
    value: CubeTensor<R>,
    problem: &AttentionProblem,
    tuning: KernelTuning,
) -> Result<(CubeTensor<R>, KernelPath), KernelError> {
    launch_fused_forward(query, key, value, None, problem, tuning)
}

/// [`fused_forward`] for a call whose fused backward follows: also each query row's
/// log-sum-exp of its scaled scores in base 2 (`[batch, heads, seq_q]` f32), which spares the
/// backward a pass over every key tile (the output laid out as [`fused_forward`]'s). For the
/// calls [`check_saves_log_sums`] accepts (the
/// tensor-core forward, exact or grouped); errors for the rest, with nothing launched. Inputs
/// whose strides are not contiguous are copied first, so that the answer
/// [`check_saves_log_sums`] gave from the shapes holds.
pub fn fused_forward_saving_log_sums<R: CubeRuntime>(
    query: CubeTensor<R>,
    key: CubeTensor<R>,
    value: CubeTensor<R>,
    problem: &AttentionProblem,
) -> Result<(CubeTensor<R>, CubeTensor<R>), KernelError> {
    let [query, key, value] = [query, key, value].map(into_contiguous);
    let log_sums = empty_device_contiguous_dtype(
        query.client.clone(),
        query.device.clone(),
        Shape::new([problem.batch, problem.heads, problem.seq_q]),
        DType::F32,
    );
    let (output, _) = launch_fused_forward(query, key, value, Some(log_sums.clone()), problem, KernelTuning::default())?;
    Ok((output, log_sums))
}

/// Whether [`fused_forward_saving_log_sums`] takes `problem` in `dtype` on `device`: what a
/// training step asks before its forward, to know whether the backward gets the log-sum-exps.
pub fn check_saves_log_sums<R: CubeRuntime>(problem: &AttentionProblem, dtype: DType, device: &R::Device) -> Result<(), KernelError> {
    check_before_launch::<R>(problem, dtype, device, kernels_cubecl::check_saves_log_sums)
}

/// The forward launch behind [`fused_forward_on_path`] and [`fused_forward_saving_log_sums`].
fn launch_fused_forward<R: CubeRuntime>(
    query: CubeTensor<R>,
    key: CubeTensor<R>,
    value: CubeTensor<R>,
    log_sums: Option<CubeTensor<R>>,
    problem: &AttentionProblem,
    tuning: KernelTuning,
) -> Result<(CubeTensor<R>, KernelPath), KernelError> {
    refusal(problem, query.dtype)?;
    let planes = hyperplanes_for(&query.client, &query.device, problem, tuning.hyperplanes)?;
    let options = forward_options(&query.client, problem, planes.as_ref(), tuning);
    // `[batch, seq_q, heads, value_dim]` rows seen as `[batch, heads, seq_q, value_dim]`: the
    // kernels write through strides, and a model merging the heads (`swap_dims(1, 2)` and a
    // reshape) then reads them without a copy.
    let rows = empty_device_contiguous_dtype(
        query.client.clone(),
        query.device.clone(),
        Shape::new([problem.batch, problem.seq_q, problem.heads, problem.value_dim]),
        query.dtype,
    );
    let output = permute(rows, &[0, 2, 1, 3]);
    let client = query.client.clone();
    let dtype = query.dtype.into();
    let bindings = AttentionBindings {
        query: query.binding(),
        key: key.binding(),
        value: value.binding(),
        output: output.clone().binding(),
        log_sums: log_sums.map(CubeTensor::binding),
    };
    let path = launch_forward(&client, bindings, dtype, &options)?;
    KERNEL_LAUNCHES.fetch_add(1, Ordering::SeqCst);
    Ok((output, path))
}

/// Gradients of the op with respect to query, key and value, given its output (and the
/// log-sum-exps [`fused_forward_saving_log_sums`] kept, where it did) and the gradient of the
/// loss with respect to that output, from the fused backward kernels
/// (`kernels_cubecl::launch_backward`): nothing `[seq_q, seq_k]` is stored.
///
/// Errors (nothing launched) for the calls [`check_backward`] refuses. Inputs whose strides are
/// not contiguous are copied first: [`check_backward`] answers for contiguous rows (the
/// tensor-core backward copies whole 16-byte chunks of Q, K, V and dO), and the answer it gave
/// before the forward must hold for whatever views the graph hands the backward.
pub fn fused_backward<R: CubeRuntime>(
    inputs: [CubeTensor<R>; 3],
    output: CubeTensor<R>,
    log_sums: Option<CubeTensor<R>>,
    grad_output: CubeTensor<R>,
    problem: &AttentionProblem,
) -> Result<[CubeTensor<R>; 3], KernelError> {
    fused_backward_tuned(inputs, output, log_sums, grad_output, problem, KernelTuning::default())
}

/// [`fused_backward`] with an explicit [`KernelTuning`] (of which the backward reads
/// [`KernelTuning::query_gradient`]), for the benchmark to compare where dQ is formed.
pub fn fused_backward_tuned<R: CubeRuntime>(
    inputs: [CubeTensor<R>; 3],
    output: CubeTensor<R>,
    log_sums: Option<CubeTensor<R>>,
    grad_output: CubeTensor<R>,
    problem: &AttentionProblem,
    tuning: KernelTuning,
) -> Result<[CubeTensor<R>; 3], KernelError> {
    let [query, key, value] = inputs.map(into_contiguous);
    let grad_output = into_contiguous(grad_output);
    refusal(problem, query.dtype)?;
    let planes = hyperplanes_for(&query.client, &query.device, problem, HyperplaneSource::Cached)?;
    let options = forward_options(&query.client, problem, planes.as_ref(), tuning);
    let [grad_query, grad_key, grad_value] = [&query, &key, &value].map(|input| {
        empty_device_contiguous_dtype(input.client.clone(), input.device.clone(), input.shape(), input.dtype)
    });
    let client = query.client.clone();
    let dtype = query.dtype.into();
    let bindings = BackwardBindings {
        forward: AttentionBindings {
            query: query.binding(),
            key: key.binding(),
            value: value.binding(),
            output: output.binding(),
            log_sums: log_sums.map(CubeTensor::binding),
        },
        grad_output: grad_output.binding(),
        grad_query: grad_query.clone().binding(),
        grad_key: grad_key.clone().binding(),
        grad_value: grad_value.clone().binding(),
    };
    launch_backward(&client, bindings, dtype, &options)?;
    KERNEL_LAUNCHES.fetch_add(1, Ordering::SeqCst);
    Ok([grad_query, grad_key, grad_value])
}

/// Whether [`fused_backward`] takes `problem` in `dtype` on `device`: what a training step
/// asks before its forward, to know which backward it will run.
pub fn check_backward<R: CubeRuntime>(problem: &AttentionProblem, dtype: DType, device: &R::Device) -> Result<(), KernelError> {
    check_before_launch::<R>(problem, dtype, device, kernels_cubecl::check_backward)
}

/// A shape-only check of the kernels (`check`, with the options the launch would take) for a
/// call not yet made, after the refusals that hold whatever the shapes.
fn check_before_launch<R: CubeRuntime>(
    problem: &AttentionProblem,
    dtype: DType,
    device: &R::Device,
    check: impl FnOnce(&ComputeClient<R>, [&[usize]; 3], StorageType, &ForwardOptions<'_, R>) -> Result<(), KernelError>,
) -> Result<(), KernelError> {
    refusal(problem, dtype)?;
    let client = R::client(device);
    let planes = hyperplanes_for(&client, device, problem, HyperplaneSource::Cached)?;
    let options = forward_options(&client, problem, planes.as_ref(), KernelTuning::default());
    let [query, key, value] = problem_shapes(problem);
    check(&client, [&query, &key, &value], dtype.into(), &options)
}

/// The query, key and value shapes of `problem`.
fn problem_shapes(problem: &AttentionProblem) -> [[usize; 4]; 3] {
    [
        [problem.batch, problem.heads, problem.seq_q, problem.head_dim],
        [problem.batch, problem.kv_heads, problem.seq_k, problem.head_dim],
        [problem.batch, problem.kv_heads, problem.seq_k, problem.value_dim],
    ]
}

/// Why the kernels do not take a problem, whatever its shapes: quiet softmax, the baseline
/// groupings, the Gram groupings they do not form, f64 and the `Projected` representative run
/// on the reference.
fn refusal(problem: &AttentionProblem, dtype: DType) -> Result<(), KernelError> {
    let config = &problem.config;
    if problem.quiet_softmax {
        return Err(KernelError::Unsupported {
            name: "quiet_softmax",
            value: "true".into(),
            expected: "false (quiet softmax runs on the reference)".into(),
        });
    }
    let in_kernel = matches!(config.grouping, Grouping::Lsh | Grouping::LshStrided) || gram_in_kernel(config).is_some();
    if !config.is_exact() && !in_kernel {
        return Err(KernelError::Unsupported {
            name: "grouping",
            value: format!("{:?}", config.grouping),
            expected: "Lsh, LshStrided, or Gram with Sample or Mean (the others run on the reference)".into(),
        });
    }
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(KernelError::Unsupported {
            name: "dtype",
            value: format!("{:?}", dtype),
            expected: "f32, f16 or bf16".into(),
        });
    }
    if config.representative == crate::Representative::Projected && !config.is_exact() {
        return Err(KernelError::Unsupported {
            name: "representative",
            value: "Projected".into(),
            expected: "Sample, Mean or SampledKeys (Projected runs on the reference)".into(),
        });
    }
    Ok(())
}

/// The pre-pass's permutation when it forms `config`'s groups from the columns' distances
/// ([`Permutation::Gram`], [`Permutation::GramKeyWeighted`]): the `Gram` groupings of a
/// query-side representative.
fn gram_in_kernel(config: &crate::DistrAttentionConfig) -> Option<Permutation> {
    if !matches!(config.representative, crate::Representative::Sample | crate::Representative::Mean) {
        return None;
    }
    match config.grouping {
        Grouping::Gram => Some(Permutation::Gram),
        Grouping::GramKeyWeighted => Some(Permutation::GramKeyWeighted),
        _ => None,
    }
}

/// The grouping pre-pass alone (`G > 1`), for the benchmark to time it; its outputs are dropped.
/// `key` is read by the key-weighted Gram grouping only.
pub fn grouping_pre_pass<R: CubeRuntime>(query: CubeTensor<R>, key: CubeTensor<R>, problem: &AttentionProblem) -> Result<(), KernelError> {
    let planes = hyperplanes_for(&query.client, &query.device, problem, HyperplaneSource::Cached)?;
    let options = forward_options(&query.client, problem, planes.as_ref(), KernelTuning::default());
    let client = query.client.clone();
    let dtype = query.dtype.into();
    launch_grouping(&client, &query.binding(), &key.binding(), dtype, &options).map(drop)
}

/// The call's hyperplanes on the device (none for exact attention).
fn hyperplanes_for<R: CubeRuntime>(
    client: &ComputeClient<R>,
    device: &R::Device,
    problem: &AttentionProblem,
    source: HyperplaneSource,
) -> Result<Option<Hyperplanes<R>>, KernelError> {
    let config = &problem.config;
    if config.is_exact() {
        return Ok(None);
    }
    match source {
        HyperplaneSource::Cached => cached_hyperplanes(client, device, config.seed, config.num_projections, config.block_rows).map(Some),
        HyperplaneSource::PerCall => {
            let values = hyperplanes(config.seed, config.num_projections, config.block_rows);
            Hyperplanes::upload(client, &values, config.num_projections, config.block_rows).map(Some)
        }
    }
}

/// The kernels' options for a validated problem (the representative was checked by the caller).
fn forward_options<'a, R: CubeRuntime>(
    client: &ComputeClient<R>,
    problem: &AttentionProblem,
    planes: Option<&'a Hyperplanes<R>>,
    tuning: KernelTuning,
) -> ForwardOptions<'a, R> {
    let config = &problem.config;
    let representative = match config.representative {
        crate::Representative::Mean => Representative::Mean,
        crate::Representative::SampledKeys => Representative::SampledKeys,
        crate::Representative::Sample | crate::Representative::Projected => Representative::Sample,
    };
    ForwardOptions {
        group_size: config.group_size,
        block_rows: config.block_rows,
        hyperplanes: planes,
        representative,
        causal: config.causal,
        scale: problem.scale as f32,
        // Full unrolling keeps the per-row arrays in registers on CUDA; WGPU's shader
        // compilers (lavapipe above all) take minutes on the unrolled bodies.
        unroll: R::name(client).contains("cuda"),
        strategy: tuning.strategy,
        permutation: gram_in_kernel(config).unwrap_or(tuning.permutation),
        layout: match config.grouping {
            Grouping::LshStrided => GroupLayout::Strided,
            _ => GroupLayout::Consecutive,
        },
        query_gradient: tuning.query_gradient,
    }
}

/// Identifies one set of hyperplanes on one device of one runtime.
type HyperplaneKey = (TypeId, String, u64, usize, usize);

/// The hyperplanes for (seed, num_projections, block_rows) on `device`, uploaded on
/// first use: every later call with the same parameters launches with no host work or
/// transfer for them.
fn cached_hyperplanes<R: CubeRuntime>(
    client: &ComputeClient<R>,
    device: &R::Device,
    seed: u64,
    num_projections: usize,
    block_rows: usize,
) -> Result<Hyperplanes<R>, KernelError> {
    static CACHE: OnceLock<Mutex<HashMap<HyperplaneKey, Box<dyn Any + Send>>>> = OnceLock::new();
    let key = (TypeId::of::<R>(), format!("{device:?}"), seed, num_projections, block_rows);
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(planes) = cache.get(&key).and_then(|entry| entry.downcast_ref::<Hyperplanes<R>>()) {
        return Ok(planes.clone());
    }
    let values = hyperplanes(seed, num_projections, block_rows);
    let planes = Hyperplanes::upload(client, &values, num_projections, block_rows)?;
    cache.insert(key, Box::new(planes.clone()));
    Ok(planes)
}
