//! The integration tests of `distr-attn`, one test binary (each linked test binary
//! instantiates the backends' generic code again: merged, the build does it once).

mod common;
mod fuzz;
mod fused_backward;
mod gradients;
mod kernel_parity;
mod op_suite;

/// Meters allocations per thread, for the fuzz tests' budgets (`parser_fuzz`).
#[global_allocator]
static METER: parser_fuzz::MeteredAllocator = parser_fuzz::MeteredAllocator;
