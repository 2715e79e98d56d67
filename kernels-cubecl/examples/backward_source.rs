//! Writes the CUDA sources of the two backward kernels (f16, 128-row blocks, exact and G = 2,
//! head dims 64 and 128, the tiles the launcher picks under 48 KiB) into DIR, for
//! `scripts/ptxas-report.py DIR`: their registers and spills without a GPU.

use std::path::PathBuf;

use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::*;
use kernels_cubecl::config::{reduced_width, BackwardConfig};
use kernels_cubecl::launch::backward_sources;
use kernels_cubecl::Representative;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: backward_source DIR")?);
    std::fs::create_dir_all(&dir)?;
    let client = cubecl::wgpu::WgpuRuntime::client(&Default::default());
    let dtype = StorageType::Scalar(ElemType::Float(FloatKind::F16));
    for head_dim in [64, 128] {
        for group_size in [1, 2] {
            let mut config = BackwardConfig {
                reduced_width: reduced_width(head_dim, group_size),
                head_dim,
                value_dim: head_dim,
                group_size,
                key_members: Representative::Sample.key_members(group_size),
                representative: Representative::Sample,
                block_rows: 128,
                key_tile: 64,
                query_tile: 64,
                causal: false,
                unroll: true,
            };
            while config.query_side_bytes() > 48 * 1024 {
                config.key_tile /= 2;
            }
            while config.key_side_bytes() > 48 * 1024 {
                config.query_tile /= 2;
            }
            let [queries, keys] = backward_sources(&client, config, dtype)?;
            std::fs::write(dir.join(format!("backward_queries_d{head_dim}_g{group_size}.cu")), queries)?;
            std::fs::write(dir.join(format!("backward_keys_d{head_dim}_g{group_size}.cu")), keys)?;
        }
    }
    Ok(())
}
