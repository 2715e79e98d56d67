//! Dispatch to the fused CubeCL forward kernel (`kernels-cubecl`): maps a validated
//! [`AttentionProblem`] onto the kernel's options, allocates the output and launches.
//!
//! Calls the kernel does not cover return an error naming why; the backend impls then log it
//! and run the tensor-op reference, so an unsupported call is slow, never wrong.

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::DType;
use burn::tensor::Shape;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use kernels_cubecl::flash_forward::AttentionBindings;
use kernels_cubecl::{launch_flash_forward, FlashForwardOptions, KernelError, Representative};

pub use kernels_cubecl::{KernelPath, MmaTiling};

use crate::{hyperplanes, AttentionProblem, Grouping};

static KERNEL_LAUNCHES: AtomicUsize = AtomicUsize::new(0);

/// How many times the fused kernel has been launched in this process: tests and benchmarks
/// read it to prove that a call took the kernel path rather than the reference.
pub fn kernel_launches() -> usize {
    KERNEL_LAUNCHES.load(Ordering::SeqCst)
}

/// Runs the fused forward kernel on `[batch, heads, seq, dim]` tensors of one CubeCL runtime.
///
/// Errors (nothing launched) for what the kernel does not cover: f64, grouping other than
/// [`Grouping::Lsh`], the `Projected` representative, quiet softmax, and the head dims, group
/// sizes and block rows outside its comptime specialisations.
pub fn fused_forward<R: CubeRuntime>(
    query: CubeTensor<R>,
    key: CubeTensor<R>,
    value: CubeTensor<R>,
    problem: &AttentionProblem,
) -> Result<CubeTensor<R>, KernelError> {
    fused_forward_on_path(query, key, value, problem, KernelTuning::default()).map(|(output, _)| output)
}

/// Which variant of the fused kernel to launch. Models take the default; the benchmark and
/// its on-device check vary it to compare paths and tilings on one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelTuning {
    /// Force the portable path even where the device has tensor cores.
    pub portable_only: bool,
    /// Tiling of the tensor-core path; `None` takes the measured default
    /// ([`MmaTiling::for_shape`]).
    pub tiling: Option<MmaTiling>,
}

/// [`fused_forward`] with an explicit [`KernelTuning`], also returning which kernel ran.
pub fn fused_forward_on_path<R: CubeRuntime>(
    query: CubeTensor<R>,
    key: CubeTensor<R>,
    value: CubeTensor<R>,
    problem: &AttentionProblem,
    tuning: KernelTuning,
) -> Result<(CubeTensor<R>, KernelPath), KernelError> {
    let config = &problem.config;
    if problem.quiet_softmax {
        return Err(KernelError::Unsupported {
            name: "quiet_softmax",
            value: "true".into(),
            expected: "false (quiet softmax runs on the reference)".into(),
        });
    }
    if !config.is_exact() && config.grouping != Grouping::Lsh {
        return Err(KernelError::Unsupported {
            name: "grouping",
            value: format!("{:?}", config.grouping),
            expected: "Lsh (the baselines run on the reference)".into(),
        });
    }
    if !matches!(query.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(KernelError::Unsupported {
            name: "dtype",
            value: format!("{:?}", query.dtype),
            expected: "f32, f16 or bf16".into(),
        });
    }
    let representative = match config.representative {
        crate::Representative::Mean => Representative::Mean,
        crate::Representative::Projected if !config.is_exact() => {
            return Err(KernelError::Unsupported {
                name: "representative",
                value: "Projected".into(),
                expected: "Sample or Mean (Projected runs on the reference)".into(),
            });
        }
        // Exact attention (group size 1) has no representative to form.
        _ => Representative::Sample,
    };
    let planes = if config.is_exact() {
        Vec::new()
    } else {
        hyperplanes(config.seed, config.num_projections, config.block_rows)
    };
    let options = FlashForwardOptions {
        group_size: config.group_size,
        block_rows: config.block_rows,
        num_projections: config.num_projections,
        hyperplanes: &planes,
        representative,
        causal: config.causal,
        scale: problem.scale as f32,
        // Full unrolling keeps the per-row arrays in registers on CUDA; WGPU's shader
        // compilers (lavapipe above all) take minutes on the unrolled bodies.
        unroll: R::name(&query.client).contains("cuda"),
        tensor_cores: !tuning.portable_only,
        tiling: tuning.tiling,
    };
    let output = empty_device_contiguous_dtype(
        query.client.clone(),
        query.device.clone(),
        Shape::new([problem.batch, problem.heads, problem.seq_q, problem.value_dim]),
        query.dtype,
    );
    let client = query.client.clone();
    let dtype = query.dtype.into();
    let bindings = AttentionBindings {
        query: query.binding(),
        key: key.binding(),
        value: value.binding(),
        output: output.clone().binding(),
    };
    let path = launch_flash_forward(&client, bindings, dtype, &options)?;
    KERNEL_LAUNCHES.fetch_add(1, Ordering::SeqCst);
    Ok((output, path))
}
