#!/usr/bin/env bash
# One device call: the backward check (the key side now forms dQ, float2 atomics into sums in
# fragment order, 8 warps per cube, where the forward saved its log-sum-exps), then the
# backward grid non-causal and causal with PyTorch's backward on the same grid; then the same
# kernel built with 4 warps per key-side cube (distr-bench-w4.xz), exact, non-causal.
# `:backward` (key side forms dQ) against `:backward-query-side` (the two-kernel path on the
# same log-sum-exps) is the A/B of this change.
set -u
root=$OUT
OUT=$root/noncausal STEPS=check,grid,sdpa CHECK_S=170 GRID_S=170 SDPA_S=50 REFERENCE_MAX_LEN=0 \
    LENGTHS=1024,4096,16384 bash benchmarks/backward_gpu.sh
OUT=$root/causal STEPS=grid,sdpa CAUSAL=true GRID_S=150 SDPA_S=50 REFERENCE_MAX_LEN=0 \
    LENGTHS=1024,4096,16384 bash benchmarks/backward_gpu.sh
OUT=$root/warps4 BENCH_XZ=.gpu/kernel/distr-bench-w4.xz STEPS=grid GRID_S=60 REFERENCE_MAX_LEN=0 \
    LENGTHS=4096,16384 GROUP_SIZES=1 bash benchmarks/backward_gpu.sh
tar -C "$root" -czf "$root/raw.tar.gz" noncausal causal warps4 && rm -rf "$root/noncausal" "$root/causal" "$root/warps4"
