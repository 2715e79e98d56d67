//! The integration tests of `distr-llama`, one test binary (each linked test binary
//! instantiates the backends' generic code again: merged, the build does it once).

mod cli;
mod parity;
mod training;
