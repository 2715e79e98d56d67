//! Writes the CUDA source of the tensor-core kernel for every specialisation the launcher
//! picks by default (head dims, group sizes, block rows, causal or not, K' summed or selected;
//! f16), one `.cu` file
//! each, or with `--variants` the stage variants and tilings the benchmark compares at head dims
//! 64 and 128. No GPU needed: the kernel is expanded through a WGPU client and lowered by
//! CubeCL's CUDA compiler. `scripts/ptxas-report.py DIR` then compiles them with NVRTC and
//! reports registers and spills.
//!
//! ```text
//! cargo run -p kernels-cubecl --features cuda --example tensor_core_source -- DIR [--variants]
//! ```

use std::path::PathBuf;

use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::*;
use kernels_cubecl::launch::tensor_core_source;
use kernels_cubecl::{
    CopyStrategy, FragmentLoads, KeyFusion, TensorCoreConfig, TensorCoreTiling, SUPPORTED_BLOCK_ROWS,
    SUPPORTED_GROUP_SIZES, SUPPORTED_HEAD_DIMS,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: tensor_core_source DIR [--variants]")?);
    let variants = args.next().as_deref() == Some("--variants");
    std::fs::create_dir_all(&dir)?;
    let client = cubecl::wgpu::WgpuRuntime::client(&Default::default());
    let dtype = StorageType::Scalar(ElemType::Float(FloatKind::F16));
    let mut configs = Vec::new();
    for head_dim in SUPPORTED_HEAD_DIMS {
        for group_size in SUPPORTED_GROUP_SIZES.into_iter().filter(|group| head_dim % group == 0) {
            for block_rows in SUPPORTED_BLOCK_ROWS {
                for causal in [false, true] {
                    let default = TensorCoreConfig {
                        head_dim,
                        value_dim: head_dim,
                        group_size,
                        key_members: group_size,
                        block_rows,
                        causal,
                        tiling: TensorCoreTiling::for_shape(head_dim, group_size, group_size, block_rows),
                        copy: CopyStrategy::DoubleBuffered,
                        fragments: FragmentLoads::Matrix,
                        key_fusion: KeyFusion::Fused,
                        saves_log_sums: false,
                    };
                    if !variants {
                        configs.push(default);
                        if group_size == 1 {
                            configs.push(TensorCoreConfig { saves_log_sums: true, ..default });
                        }
                        if group_size > 1 {
                            let tiling = TensorCoreTiling::for_shape(head_dim, group_size, 1, block_rows);
                            configs.push(TensorCoreConfig { key_members: 1, tiling, ..default });
                        }
                    } else if [64, 128].contains(&head_dim) && [1, 2].contains(&group_size) && block_rows == 128 && !causal {
                        for copy in [CopyStrategy::Synchronous, CopyStrategy::DoubleBuffered] {
                            for fragments in [FragmentLoads::Scalar, FragmentLoads::MatrixQueryKey, FragmentLoads::Matrix] {
                                configs.push(TensorCoreConfig { copy, fragments, ..default });
                            }
                        }
                        for key_tile in TensorCoreTiling::KEY_TILES {
                            for query_in_registers in [false, true] {
                                let tiling = TensorCoreTiling { key_tile, query_in_registers, ..default.tiling };
                                configs.push(TensorCoreConfig { tiling, ..default });
                            }
                        }
                    }
                }
            }
        }
    }
    configs.dedup();
    for config in &configs {
        let tiling = config.tiling;
        let name = format!(
            "d{}_g{}_k{}_l{}_{}x{}x{}{}_{:?}_{:?}{}{}.cu",
            config.head_dim,
            config.group_size,
            config.key_members,
            config.block_rows,
            tiling.warps,
            tiling.warp_tiles,
            tiling.key_tile,
            if tiling.query_in_registers { "r" } else { "s" },
            config.copy,
            config.fragments,
            if config.causal { "_causal" } else { "" },
            if config.saves_log_sums { "_lse" } else { "" }
        );
        std::fs::write(dir.join(name), tensor_core_source(&client, *config, dtype)?)?;
    }
    println!("wrote {} kernels to {}", configs.len(), dir.display());
    Ok(())
}
