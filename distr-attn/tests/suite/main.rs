//! The integration tests of `distr-attn`, one test binary (each linked test binary
//! instantiates the backends' generic code again: merged, the build does it once).

mod common;
mod gradients;
mod kernel_parity;
mod op_suite;
