//! The layer above the op that model crates share (feature `experiment`): what a command line
//! that runs a model with DistrAttention needs besides the model itself.
//!
//! A model crate brings its definition, its loader and a scoring function; this module brings
//! the rest, the same way for every model:
//!
//! - [`args`]: the attention options (`--attention`, `--config`, `--group-size`, ...) and
//!   their translation into a checked [`ModelAttentionConfig`](crate::ModelAttentionConfig);
//!   [`command_line`]: parsing with negative numbers allowed, the runtime directory wgpu needs;
//!   [`kernel_cache`]: compiled kernels and autotune decisions kept between runs.
//! - [`calibration`]: the greedy per-layer search under a budget, and attention FLOPs.
//! - [`checkpoint`]: trained weights saved and reloaded with their shapes checked.
//! - [`npy`]: NumPy `.npy` files; [`output`]: output paths checked before the work.
//! - [`progress`]: progress bars on terminals, silent under `--json`.

pub mod args;
pub mod calibration;
pub mod checkpoint;
pub mod command_line;
pub mod kernel_cache;
mod error;
pub mod npy;
pub mod output;
pub mod progress;

pub use error::{require, ExperimentError};
