//! CubeCL kernels of DistrAttention, compiled for CUDA and WGPU from one source.
//!
//! - [`block_permutation`]: per query block, the LSH codes of the block's columns and their
//!   bitonic sort in shared memory (steps 2-4 of the definition).
//! - [`grouped_query`]: Q' elements from that permutation (step 5).
//! - [`flash_forward`]: the fused forward pass, FlashAttention-2 style: one cube per (query
//!   block, batch, head), grouped queries formed once, fused keys built tile by tile in shared
//!   memory, online softmax, no `[seq_q, seq_k]` matrix in device memory. Portable path.
//! - [`flash_forward_mma`]: the same pass on tensor cores (CUDA `mma.sync`), chosen at launch
//!   from the device's features.
//!
//! This crate knows nothing about Burn: it takes CubeCL tensor bindings.

pub mod block_permutation;
mod error;
pub mod flash_forward;
pub mod flash_forward_mma;
pub mod grouped_query;

pub use flash_forward_mma::MmaTiling;

pub use error::KernelError;
pub use flash_forward::{
    launch_flash_forward, tensor_core_config, FlashForwardOptions, KernelPath, Representative, SUPPORTED_HEAD_DIMS,
};
