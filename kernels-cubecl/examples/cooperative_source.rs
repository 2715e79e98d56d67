//! Writes the CUDA source of the cooperative-matrix forward (f16, 16 x 16 x 16 fragments, planes
//! of 32, 128-row blocks) for head dims 64 and 128, G = 1 and 2, causal or not, at every key
//! tile that fits 48 KiB of shared memory (what NVIDIA's Vulkan driver offers) into DIR, for
//! `scripts/ptxas-report.py DIR`: the registers and spills of the kernel Vulkan runs, as CUDA's
//! compiler sees it.
//!
//! ```text
//! cargo run -p kernels-cubecl --features cuda --example cooperative_source -- DIR
//! ```

use std::path::PathBuf;

use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::*;
use kernels_cubecl::config::{CooperativeConfig, MatrixShape};
use kernels_cubecl::launch::cooperative_source;

const VULKAN_SHARED_BYTES: usize = 48 * 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: cooperative_source DIR")?);
    std::fs::create_dir_all(&dir)?;
    let client = cubecl::wgpu::WgpuRuntime::client(&Default::default());
    let dtype = StorageType::Scalar(ElemType::Float(FloatKind::F16));
    for head_dim in [64, 128] {
        for group_size in [1, 2] {
            for causal in [false, true] {
                for key_tile in CooperativeConfig::KEY_TILES {
                    let config = CooperativeConfig {
                        reduced_width: head_dim / group_size,
                        head_dim,
                        value_dim: head_dim,
                        group_size,
                        key_members: group_size,
                        block_rows: 128,
                        key_tile,
                        causal,
                        shape: MatrixShape { m: 16, n: 16, k: 16 },
                        plane_size: 32,
                    };
                    if !config.is_consistent() || config.shared_bytes(2) > VULKAN_SHARED_BYTES {
                        continue;
                    }
                    let name = format!("cooperative_d{head_dim}_g{group_size}_k{key_tile}{}.cu", if causal { "_causal" } else { "" });
                    std::fs::write(dir.join(name), cooperative_source(&client, config, dtype)?)?;
                }
            }
        }
    }
    Ok(())
}
