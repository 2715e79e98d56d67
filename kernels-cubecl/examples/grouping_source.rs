//! Writes the CUDA source of the grouping pre-pass (f16, G = 2, 128-row blocks, head dims 64 and
//! 128; LSH with 16 hyperplanes and the Gram grouping) into DIR, for
//! `scripts/ptxas-report.py DIR --opcodes`.

use std::path::PathBuf;

use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::*;
use kernels_cubecl::launch::grouping_source;
use kernels_cubecl::config::GroupingConfig;
use kernels_cubecl::{GroupLayout, Permutation, Representative};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: grouping_source DIR")?);
    std::fs::create_dir_all(&dir)?;
    let client = cubecl::wgpu::WgpuRuntime::client(&Default::default());
    let dtype = StorageType::Scalar(ElemType::Float(FloatKind::F16));
    for head_dim in [64, 128] {
        for (name, permutation, representative) in
            [("lsh", Permutation::Lsh, Representative::SampledKeys), ("gram", Permutation::Gram, Representative::Mean)]
        {
            let config = GroupingConfig {
                head_dim,
                group_size: 2,
                block_rows: 128,
                num_projections: 16,
                representative,
                permutation,
                layout: GroupLayout::Consecutive,
                unroll: true,
            };
            let source = grouping_source(&client, config, dtype)?;
            std::fs::write(dir.join(format!("group_queries_{name}_d{head_dim}.cu")), source)?;
        }
    }
    Ok(())
}
