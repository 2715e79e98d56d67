#!/usr/bin/env bash
# The whole test suite: fetches the real models the tests use (once, into .cache/models),
# then runs every crate's tests on NdArray and on wgpu (Mesa's lavapipe where there is no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-models.sh
export DISTR_MODELS_DIR="$PWD/.cache/models"
# wgpu's Vulkan loader wants a runtime dir; CI containers often lack one.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
# Libraries, command lines and test suites, then the doc tests; the examples (a demo and
# measurement tools) are left to `cargo run --example`: each links its own copy of the
# backends, about four of the 2-core CI's minutes for code that tests nothing.
cargo test --workspace --locked --lib --bins --tests
# The kernels again with CubeCL's SPIR-V compiler (feature `vulkan`), which lavapipe runs too:
# the op's, the fused backward's and the backend tests (about ten more minutes of build).
cargo test -p distr-attn --locked --features vulkan --lib --test suite -- backends kernel_parity fused_backward
# The cooperative-matrix kernel compiled to SPIR-V (lavapipe has no cooperative matrices to
# run it; the GPU benchmark checks it).
cargo test -p kernels-cubecl --locked --features vulkan --lib cooperative
cargo test --workspace --locked --doc
