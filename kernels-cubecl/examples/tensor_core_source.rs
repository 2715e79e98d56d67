//! Writes the CUDA source of the tensor-core kernel for every specialisation the launcher
//! picks by default (head dims, group sizes, block rows, causal or not; f16), or with
//! `--all-tilings` for every tiling too, one `.cu` file each. No GPU needed: the kernel is
//! expanded through a WGPU client and lowered by CubeCL's CUDA compiler.
//! `scripts/ptxas-report.py DIR` then compiles them with NVRTC and reports registers and
//! spills.
//!
//! ```text
//! cargo run -p kernels-cubecl --features cuda --example tensor_core_source -- DIR [--all-tilings]
//! ```

use std::path::PathBuf;

use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::*;
use kernels_cubecl::flash_forward::{SUPPORTED_BLOCK_ROWS, SUPPORTED_GROUP_SIZES};
use kernels_cubecl::flash_forward_mma::{tensor_core_source, MmaForwardConfig};
use kernels_cubecl::{MmaTiling, Representative, SUPPORTED_HEAD_DIMS};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: tensor_core_source DIR [--all-tilings]")?);
    let all_tilings = args.next().as_deref() == Some("--all-tilings");
    std::fs::create_dir_all(&dir)?;
    let client = cubecl::wgpu::WgpuRuntime::client(&Default::default());
    let dtype = StorageType::Scalar(ElemType::Float(FloatKind::F16));
    let mut written = 0;
    for head_dim in SUPPORTED_HEAD_DIMS {
        for group_size in SUPPORTED_GROUP_SIZES.into_iter().filter(|group| head_dim % group == 0) {
            let tilings: Vec<MmaTiling> = if all_tilings {
                let mut tilings = Vec::new();
                for warp_tiles in MmaTiling::WARP_TILES {
                    for key_tile in MmaTiling::KEY_TILES {
                        for prefetch in [false, true] {
                            tilings.push(MmaTiling { warp_tiles, key_tile, prefetch });
                        }
                    }
                }
                tilings
            } else {
                vec![MmaTiling::for_shape(head_dim, group_size)]
            };
            for tiling in tilings {
                for block_rows in SUPPORTED_BLOCK_ROWS {
                    for causal in [false, true] {
                        let config = MmaForwardConfig {
                            head_dim,
                            value_dim: head_dim,
                            group_size,
                            block_rows,
                            num_projections: 16,
                            representative: Representative::Sample,
                            causal,
                            tiling,
                        };
                        if !config.is_consistent() {
                            continue;
                        }
                        let MmaTiling { warp_tiles, key_tile, prefetch } = tiling;
                        let name = format!(
                            "d{head_dim}_g{group_size}_l{block_rows}_{warp_tiles}x{key_tile}{}{}.cu",
                            if prefetch { "p" } else { "" },
                            if causal { "_causal" } else { "" }
                        );
                        std::fs::write(dir.join(name), tensor_core_source(&client, config, dtype)?)?;
                        written += 1;
                    }
                }
            }
        }
    }
    println!("wrote {written} kernels to {}", dir.display());
    Ok(())
}
