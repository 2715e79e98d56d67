#!/usr/bin/env bash
# One device call: the backward check (grouped calls now on the grouped forward's log-sum-exps),
# then the backward grid non-causal and causal, each with PyTorch's backward on the same grid.
set -u
root=$OUT
OUT=$root/noncausal STEPS=check,grid,sdpa CHECK_S=150 GRID_S=170 SDPA_S=50 REFERENCE_MAX_LEN=0 \
    LENGTHS=1024,4096,16384 bash benchmarks/backward_gpu.sh
OUT=$root/causal STEPS=grid,sdpa CAUSAL=true GRID_S=140 SDPA_S=50 REFERENCE_MAX_LEN=0 \
    LENGTHS=1024,4096,16384 bash benchmarks/backward_gpu.sh
tar -C "$root" -czf "$root/raw.tar.gz" noncausal causal && rm -rf "$root/noncausal" "$root/causal"
