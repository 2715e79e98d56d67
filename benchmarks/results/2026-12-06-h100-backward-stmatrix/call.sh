#!/usr/bin/env bash
# One device call: main's CUDA build at 456e873 (.gpu/kernel/distr-bench-base.xz) against the
# build of the key side storing dS by stmatrix.trans (.gpu/kernel/distr-bench.xz). Carry .gpu/kernel.
BACKWARD=true LENGTHS=4096,16384 ROUNDS=1 CHECK_FLAGS="--check-only causal=false" OUT=$OUT/stm bash benchmarks/ab_gpu.sh
