//! Backends chosen at run time (`--backend ndarray|wgpu|cuda` in the CLIs), each compiled in
//! by a cargo feature.

use std::fmt;
use std::str::FromStr;

use crate::DistrAttentionBackend;

/// The CPU backend: always available.
pub type NdArrayBackend = burn::backend::NdArray<f32>;
/// WGPU (Vulkan, Metal, WebGPU), with Burn's fusion: feature `wgpu`.
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn::backend::Wgpu;
/// CUDA, with Burn's fusion: feature `cuda`.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;

/// A backend named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    NdArray,
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

/// A backend that this build does not include.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend `{0}` is not compiled in: rebuild with `--features {0}`")]
pub struct BackendUnavailable(pub BackendKind);

impl BackendKind {
    /// Runs `runner` on this backend's default device.
    pub fn run<R: BackendRunner>(self, runner: R) -> Result<R::Output, BackendUnavailable> {
        match self {
            BackendKind::NdArray => Ok(runner.run::<NdArrayBackend>(Default::default())),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => Ok(runner.run::<WgpuBackend>(Default::default())),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => Ok(runner.run::<CudaBackend>(Default::default())),
            #[allow(unreachable_patterns)]
            unavailable => Err(BackendUnavailable(unavailable)),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::NdArray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        })
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "ndarray" | "cpu" => Ok(BackendKind::NdArray),
            "wgpu" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            other => Err(format!(
                "unknown backend `{other}`: expected ndarray, wgpu or cuda"
            )),
        }
    }
}
