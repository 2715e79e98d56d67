//! The integration tests of `distr-llama`, one test binary (each linked test binary
//! instantiates the backends' generic code again: merged, the build does it once).

mod cli;
mod fuzz;
mod parity;
mod training;

/// Meters allocations per thread, for the fuzz tests' budgets (`parser_fuzz`).
#[global_allocator]
static METER: parser_fuzz::MeteredAllocator = parser_fuzz::MeteredAllocator;
