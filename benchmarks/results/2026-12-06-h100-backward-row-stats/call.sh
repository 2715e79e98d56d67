#!/usr/bin/env bash
# One device call: the backward of the build before the row statistics became 16-byte pairs
# (.gpu/kernel/distr-bench-base.xz, commit 8b84e03's CUDA build, whose backward kernels main
# kept until this change) against the build with them (.gpu/kernel/distr-bench.xz, this
# commit's working tree before the launcher kept causal calls on the query side). Carry .gpu/kernel.
mkdir -p "$OUT/ab" && BACKWARD=true LENGTHS=4096,16384 ROUNDS=2 OUT=$OUT/ab timeout 580 bash benchmarks/ab_gpu.sh
