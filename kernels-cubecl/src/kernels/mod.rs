//! The kernels, one file each; they share comptime types through [`crate::config`] and device
//! functions through [`crate::block_permutation`] and [`crate::grouped_query`], never each other.

pub(crate) mod combine_splits;
pub(crate) mod group_queries;
pub(crate) mod portable_forward;
pub(crate) mod split_keys_decode;
pub(crate) mod tensor_core_forward;
pub(crate) mod transpose_keys;
