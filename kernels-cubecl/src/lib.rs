//! CubeCL kernels of DistrAttention, compiled for CUDA and WGPU from one source.
//!
//! The data path of one call ([`launch_forward`]):
//!
//! 1. `G > 1`: the grouping pre-pass ([`kernels::group_queries`]) hashes and sorts each query
//!    block's columns ([`block_permutation`]), or groups them by their distances
//!    ([`gram_grouping`]), and writes Q' ([`grouped_query`]) and the block's K column table;
//! 2. one fused forward kernel, FlashAttention-2 style (no `[seq_q, seq_k]` matrix in device
//!    memory), forms K' tile by tile from the column table: on tensor cores
//!    ([`kernels::tensor_core_forward`], CUDA `mma.sync`) where the device has them, on
//!    cooperative matrices ([`kernels::cooperative_forward`], `cmma`: wgpu on Vulkan, Metal)
//!    where it has those instead, in plain f32 everywhere else ([`kernels::portable_forward`]); decode-sized calls (at most
//!    [`DECODE_QUERY_ROWS`] query rows) split the keys across cubes instead
//!    ([`kernels::split_keys_decode`], then [`kernels::combine_splits`]).
//!
//! The backward ([`launch_backward`]) recomputes the scores tile by tile in two kernels, one
//! for dQ (and each row's log-sum-exp) and one for dK and dV: on tensor cores for exact
//! attention ([`kernels::tensor_core_backward_queries`], [`kernels::tensor_core_backward_keys`]),
//! which grouped calls reach through their expanded query (the pre-pass again, then
//! [`kernels::expanded_query`]; groupings the pre-pass does not form, through one the caller
//! forms); in plain f32 elsewhere ([`kernels::backward_queries`], [`kernels::backward_keys`],
//! grouped calls at their reduced width).
//!
//! [`config`] holds the comptime types, [`mma_tiles`] the tensor-core kernels' shared device
//! functions; [`launch`] validates once, picks a [`Strategy`] and launches. This crate knows
//! nothing about Burn: it takes CubeCL tensor bindings.

pub mod block_permutation;
pub mod config;
mod error;
pub mod gram_grouping;
pub mod grouped_query;
pub mod key_tiles;
pub mod kernels;
pub mod launch;
mod mma_tiles;

pub use config::{
    BackwardConfig, CooperativeConfig, CopyStrategy, DecodeConfig, FragmentLoads, GroupLayout, KeyFusion, MatrixShape, Permutation, QueryGradient, Representative, TensorCoreBackwardConfig, TensorCoreConfig,
    TensorCoreTiling, DECODE_QUERY_ROWS, SUPPORTED_BLOCK_ROWS, SUPPORTED_GROUP_SIZES, SUPPORTED_HEAD_DIMS,
};
pub use error::KernelError;
pub use launch::{
    check_backward, check_saves_log_sums, launch_backward, launch_forward, launch_grouping, AttentionBindings, BackwardBindings, ForwardOptions, Hyperplanes, KernelPath, Strategy,
    TensorCoreVariant,
};
