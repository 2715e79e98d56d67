//! Backends chosen at run time (`--backend flex|ndarray|wgpu|cuda` in the CLIs), and the float
//! type a model runs in on them (`--dtype f32|f16|bf16`). Flex is always compiled in; every other
//! backend needs its cargo feature, NdArray included: each backend compiled in instantiates every
//! command of a CLI once more, so NdArray (8-26x slower than Flex for the same f32 results) is
//! built only for those who ask for it.

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::Backend;
use burn::tensor::{get_device_settings, set_default_dtypes, DType, Element, FloatDType};

use crate::DistrAttentionBackend;

/// Burn's NdArray CPU backend: always available to library code; on the command line with the
/// feature `ndarray`.
pub type NdArrayBackend = burn::backend::NdArray<f32>;
/// Burn's Flex CPU backend (gemm, SIMD, f16/bf16): always available.
pub type FlexBackend = burn::backend::Flex;
/// WGPU (Vulkan, Metal, WebGPU), with Burn's fusion: feature `wgpu`. Kernels are compiled to
/// WGSL, or with the feature `vulkan` to SPIR-V on Vulkan adapters ([`wgpu_compiler`]).
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn::backend::Wgpu;
/// CUDA, with Burn's fusion: feature `cuda`.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;

/// A backend named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    NdArray,
    Flex,
    Wgpu,
    Cuda,
}

/// Code to run on whichever backend was chosen: the generic body of a command. Training
/// commands run on `burn::backend::Autodiff<B>` of it: `Autodiff` of every backend here is a
/// `DistrAttentionBackend` too.
pub trait BackendRunner {
    type Output;
    fn run<B: DistrAttentionBackend>(self, device: B::Device) -> Self::Output;
}

/// The float type of a model's weights and activations. Half precision is what puts a model on
/// the tensor-core kernel on CUDA; statistics that overflow in f16 (norms, the loss) are taken
/// in f32 by the models whatever this is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    F32,
    F16,
    Bf16,
}

impl Precision {
    /// The tensor dtype of this precision.
    pub fn float_dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }
}

/// Why a command could not start on the backend it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendUnavailable {
    /// This build does not include the backend.
    #[error("backend `{0}` is not compiled in: rebuild with `--features {0}`")]
    NotCompiled(BackendKind),
    /// The backend's device cannot hold the precision's tensors (NdArray: f32 only; WGSL: no
    /// bf16).
    #[error("--dtype {precision}: backend `{backend}` does not support it on this device ({reason})")]
    Precision {
        backend: BackendKind,
        precision: Precision,
        reason: String,
    },
}

impl BackendKind {
    /// Runs `runner` on this backend's default device in f32.
    pub fn run<R: BackendRunner>(self, runner: R) -> Result<R::Output, BackendUnavailable> {
        self.run_in(Precision::F32, runner)
    }

    /// Runs `runner` on this backend's default device with `precision` as the default float
    /// type of every tensor created there (weights, inputs, activations), the way Burn's device
    /// policy sets it. A device's policy is set once per process: asking for another precision
    /// after the device has been used is an error.
    pub fn run_in<R: BackendRunner>(self, precision: Precision, runner: R) -> Result<R::Output, BackendUnavailable> {
        match self {
            #[cfg(feature = "ndarray")]
            BackendKind::NdArray => run_on::<NdArrayBackend, R>(self, precision, runner),
            BackendKind::Flex => run_on::<FlexBackend, R>(self, precision, runner),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => run_on::<WgpuBackend, R>(self, precision, runner),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => run_on::<CudaBackend, R>(self, precision, runner),
            #[allow(unreachable_patterns)]
            unavailable => Err(BackendUnavailable::NotCompiled(unavailable)),
        }
    }
}

/// What the wgpu backend compiles kernels to on the default adapter: `wgpu<spirv>` on Vulkan in
/// builds with the feature `vulkan`, `wgpu<msl>` on Metal where CubeCL's MSL compiler is built
/// in, `wgpu<wgsl>` otherwise. A build-time choice: CubeCL picks the compiler per adapter.
#[cfg(feature = "wgpu")]
pub fn wgpu_compiler() -> &'static str {
    use burn::backend::wgpu::WgpuRuntime;
    use burn_cubecl::cubecl::Runtime;
    WgpuRuntime::name(&WgpuRuntime::client(&Default::default()))
}

fn run_on<B: DistrAttentionBackend, R: BackendRunner>(
    kind: BackendKind,
    precision: Precision,
    runner: R,
) -> Result<R::Output, BackendUnavailable> {
    let device = B::Device::default();
    set_precision::<B>(&device, precision).map_err(|reason| BackendUnavailable::Precision { backend: kind, precision, reason })?;
    Ok(runner.run::<B>(device))
}

/// Makes `precision` the device's default float type. f32 is every backend's default and is
/// left alone, so f32 runs can share a process (and a device) with each other.
fn set_precision<B: Backend>(device: &B::Device, precision: Precision) -> Result<(), String> {
    let dtype = precision.float_dtype();
    if precision == Precision::F32 {
        return Ok(());
    }
    if !B::supports_dtype(device, DType::from(dtype)) {
        return Err(format!("{:?} unsupported", DType::from(dtype)));
    }
    match set_default_dtypes::<B>(device, dtype, <B::IntElem as Element>::dtype()) {
        Ok(()) => Ok(()),
        // Set before in this process: fine if to the same precision.
        Err(_) if get_device_settings::<B>(device).float_dtype == dtype => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "f32" | "float32" => Ok(Precision::F32),
            "f16" | "float16" | "half" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => Err(format!("unknown dtype `{other}`: expected f32, f16 or bf16")),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::NdArray => "ndarray",
            BackendKind::Flex => "flex",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        })
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "ndarray" => Ok(BackendKind::NdArray),
            "flex" | "cpu" => Ok(BackendKind::Flex),
            "wgpu" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            other => Err(format!(
                "unknown backend `{other}`: expected flex (or cpu), ndarray, wgpu or cuda"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tensor;

    use super::*;

    /// Reports the dtype a new float tensor gets on the device it was given.
    struct NewTensorDtype;

    impl BackendRunner for NewTensorDtype {
        type Output = DType;
        fn run<B: DistrAttentionBackend>(self, device: B::Device) -> DType {
            Tensor::<B, 1>::zeros([2], &device).dtype()
        }
    }

    #[test]
    fn precisions_parse_and_print_as_the_flag_spells_them() {
        for precision in [Precision::F32, Precision::F16, Precision::Bf16] {
            assert_eq!(precision.to_string().parse::<Precision>(), Ok(precision));
        }
        assert_eq!("bfloat16".parse::<Precision>(), Ok(Precision::Bf16));
        assert!("f8".parse::<Precision>().unwrap_err().contains("expected f32, f16 or bf16"));
    }

    /// The feature `vulkan` is what switches the wgpu backend to SPIR-V (the test machines'
    /// adapter, lavapipe, is a Vulkan one).
    #[cfg(feature = "wgpu")]
    #[test]
    fn the_vulkan_feature_compiles_wgpu_kernels_to_spirv() {
        let expected = if cfg!(feature = "vulkan") { "wgpu<spirv>" } else { "wgpu<wgsl>" };
        assert_eq!(wgpu_compiler(), expected);
    }

    #[cfg(not(feature = "ndarray"))]
    #[test]
    fn ndarray_without_its_feature_is_refused_naming_the_feature() {
        let error = BackendKind::NdArray.run(NewTensorDtype).unwrap_err();
        assert_eq!(error, BackendUnavailable::NotCompiled(BackendKind::NdArray));
        assert_eq!(error.to_string(), "backend `ndarray` is not compiled in: rebuild with `--features ndarray`");
    }

    #[cfg(feature = "ndarray")]
    #[test]
    fn ndarray_runs_f32_and_refuses_half_precision_naming_the_flag() {
        assert_eq!(BackendKind::NdArray.run(NewTensorDtype), Ok(DType::F32));
        let error = BackendKind::NdArray.run_in(Precision::F16, NewTensorDtype).unwrap_err();
        assert!(matches!(error, BackendUnavailable::Precision { precision: Precision::F16, .. }));
        assert!(error.to_string().starts_with("--dtype f16: backend `ndarray` does not support it"), "{error}");
    }
}
