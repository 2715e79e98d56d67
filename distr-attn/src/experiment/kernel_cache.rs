//! Compiled kernels and autotune decisions kept on disk between runs (`--kernel-cache DIR`).
//!
//! On CUDA a process compiles every kernel it launches (NVRTC) and benchmarks the candidates
//! of every autotuned operation the first time it meets a shape: SmolLM2-135M's first training
//! step spent 320-356 s there on an H100/H200 before its first 0.2 s step. CubeCL can keep
//! both on disk, PTX on CUDA and SPIR-V on wgpu's Vulkan compiler, but keys a compiled kernel
//! by its name and compile-time settings, not by its source: a cache shared between two builds
//! could hand the second one the first one's kernel. So the cache lives in a subdirectory named
//! for the executable's contents, and a rebuilt binary starts an empty one.

use std::hash::Hasher;
use std::path::{Path, PathBuf};

use burn_cubecl::cubecl::config::cache::CacheConfig;
use burn_cubecl::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

use super::ExperimentError;

/// Makes CubeCL keep compiled kernels and autotune decisions under `dir`, in the
/// subdirectory of this executable (created if missing), which it returns. Call it before the
/// first kernel runs: CubeCL reads its configuration once, and an error says so if it already
/// has. Other settings (a `cubecl.toml`, `CUBECL_AUTOTUNE_LEVEL`) still apply.
pub fn use_kernel_cache(dir: &Path) -> Result<PathBuf, ExperimentError> {
    if CubeClRuntimeConfig::storage().lock().is_some() {
        return Err(ExperimentError::argument(
            "--kernel-cache",
            dir.display(),
            "must be set before the first kernel runs (CubeCL has read its configuration)",
        ));
    }
    let root = dir.join(format!("build-{:016x}", executable_fingerprint()?));
    std::fs::create_dir_all(&root).map_err(|source| ExperimentError::Io { path: root.clone(), source })?;
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.compilation.cache = Some(CacheConfig::File(root.clone()));
    config.autotune.cache = CacheConfig::File(root.clone());
    CubeClRuntimeConfig::set(config);
    Ok(root)
}

/// A hash of the running executable's bytes: equal for the same build, different after any
/// change that reaches the binary.
fn executable_fingerprint() -> Result<u64, ExperimentError> {
    let io = |path: PathBuf| move |source| ExperimentError::Io { path, source };
    let exe = std::env::current_exe().map_err(io("the running executable".into()))?;
    let bytes = std::fs::read(&exe).map_err(io(exe.clone()))?;
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(&bytes);
    Ok(hasher.finish())
}
