//! The integration tests of `distr-vit`, one test binary (each linked test binary
//! instantiates the backends' generic code again: merged, the build does it once).

mod common;
mod cli;
mod distr_fidelity;
mod fuzz;
mod half_precision;
mod onnx_parity;
mod safetensors_import;

/// Meters allocations per thread, for the fuzz tests' budgets (`parser_fuzz`).
#[global_allocator]
static METER: parser_fuzz::MeteredAllocator = parser_fuzz::MeteredAllocator;
