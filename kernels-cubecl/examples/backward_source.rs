//! Writes the CUDA sources of the backward kernels into DIR, for `scripts/ptxas-report.py DIR`:
//! their registers and spills without a GPU. The portable pair (f16, 128-row blocks, exact and
//! G = 2, head dims 64 and 128, the tiles the launcher picks under 48 KiB) and the tensor-core
//! pair (f16 and bf16, head dims 64 and 128, causal and not, the tiles the launcher picks; the
//! key side also forming dQ), and
//! the expanded query's pair that puts grouped calls on it (f16, every representative).

use std::path::PathBuf;

use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::*;
use kernels_cubecl::config::{reduced_width, BackwardConfig, ExpansionConfig, TensorCoreBackwardConfig};
use kernels_cubecl::launch::{backward_sources, expanded_query_sources, tensor_core_backward_sources};
use kernels_cubecl::Representative;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: backward_source DIR")?);
    std::fs::create_dir_all(&dir)?;
    let client = cubecl::wgpu::WgpuRuntime::client(&Default::default());
    let f16 = StorageType::Scalar(ElemType::Float(FloatKind::F16));
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
            let [queries, keys] = backward_sources(&client, config, f16)?;
            std::fs::write(dir.join(format!("backward_queries_d{head_dim}_g{group_size}.cu")), queries)?;
            std::fs::write(dir.join(format!("backward_keys_d{head_dim}_g{group_size}.cu")), keys)?;
        }
    }
    let bf16 = StorageType::Scalar(ElemType::Float(FloatKind::BF16));
    for (dtype, name) in [(f16, "f16"), (bf16, "bf16")] {
        for head_dim in [64, 128] {
            for causal in [false, true] {
                let [queries, keys] = TensorCoreBackwardConfig::for_shape(head_dim, head_dim, causal);
                let [queries_source, keys_source] = tensor_core_backward_sources(&client, [queries, keys], dtype)?;
                let suffix = format!("d{head_dim}_{name}{}", if causal { "_causal" } else { "" });
                std::fs::write(dir.join(format!("tensor_core_backward_queries_{suffix}.cu")), queries_source)?;
                std::fs::write(dir.join(format!("tensor_core_backward_keys_{suffix}.cu")), keys_source)?;
                let saved = TensorCoreBackwardConfig { saved_log_sums: true, ..queries };
                let [saved_source, _] = tensor_core_backward_sources(&client, [saved, keys], dtype)?;
                std::fs::write(dir.join(format!("tensor_core_backward_queries_{suffix}_lse.cu")), saved_source)?;
                let key_side = keys.forming_query_gradient();
                let [_, key_side_source] = tensor_core_backward_sources(&client, [saved, key_side], dtype)?;
                std::fs::write(dir.join(format!("tensor_core_backward_keys_{suffix}_dq.cu")), key_side_source)?;
            }
        }
    }
    for representative in [Representative::Sample, Representative::Mean, Representative::SampledKeys] {
        let config = ExpansionConfig { head_dim: 128, group_size: 2, block_rows: 128, representative };
        let [expand, fold] = expanded_query_sources(&client, config, f16)?;
        std::fs::write(dir.join(format!("expand_query_{representative:?}.cu")), expand)?;
        std::fs::write(dir.join(format!("fold_query_gradient_{representative:?}.cu")), fold)?;
    }
    Ok(())
}
