//! The kernels, one file each; they share comptime types through [`crate::config`] and device
//! functions through [`crate::block_permutation`], [`crate::grouped_query`] and
//! [`crate::key_tiles`] and [`crate::mma_tiles`], never each other.

pub(crate) mod backward_keys;
pub(crate) mod backward_queries;
pub(crate) mod backward_row_stats;
pub(crate) mod combine_splits;
pub(crate) mod cooperative_forward;
pub(crate) mod expanded_query;
pub(crate) mod group_queries;
pub(crate) mod key_lengths;
pub(crate) mod portable_forward;
pub(crate) mod split_keys_decode;
pub(crate) mod tensor_core_backward_keys;
pub(crate) mod tensor_core_backward_queries;
pub(crate) mod tensor_core_forward;
pub(crate) mod transpose_keys;
