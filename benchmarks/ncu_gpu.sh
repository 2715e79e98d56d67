#!/usr/bin/env bash
# Nsight Compute on one launch each of our exact forward kernel, DistrAttention's G = 2
# (Sample and SampledKeys) and PyTorch's FlashAttention-2, same shape (B = 4, H = 16, N = 4096,
# d = 64, fp16, not causal): where each spends its cycles (speed of light, occupancy, warp
# stalls, memory). Expects the build of run_gpu.sh in .gpu/kernel (BENCH_XZ names another);
# writes $OUT/ncu-*.txt. KERNELS=cooperative profiles the cooperative-matrix forward on CUDA's
# cmma instead (exact, d = 64 and 128, and G = 2 at d = 64), with its memory tables (shared
# memory bank conflicts).
set -u
out=${OUT:-benchmarks/results/latest}
mkdir -p "$out" /tmp/bench
[ -x /tmp/bench/distr-bench ] || { xz -dc "${BENCH_XZ:-.gpu/kernel/distr-bench.xz}" > /tmp/bench/distr-bench && chmod +x /tmp/bench/distr-bench; } || exit 2
printf '[compilation]\ncache = "local"\n' > cubecl.toml
sections=(--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats
    --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis)
ncu_one() { # name, kernel regex, command...
    local name=$1 kernel=$2
    shift 2
    timeout "${NCU_S:-90}" ncu --clock-control none -k "regex:$kernel" --launch-skip 3 --launch-count 1 "${sections[@]}" "$@" \
        > "$out/ncu-$name.txt" 2> "$out/ncu-$name.log"
    echo "ncu $name exit $?"
}
shape=(--lengths 4096 --head-dims 64 --causal false --block-rows 128 --budget-ms 1 --burn-max-len 0)
if [ "${KERNELS:-}" = cooperative ]; then
    sections+=(--section MemoryWorkloadAnalysis_Tables --section SchedulerStats)
    cooperative=(--lengths 4096 --causal false --block-rows 128 --budget-ms 1 --burn-max-len 0 --variants cooperative)
    ncu_one cooperative-exact-d64 cooperative_forward /tmp/bench/distr-bench "${cooperative[@]}" --head-dims 64 --group-sizes 1
    ncu_one cooperative-exact-d128 cooperative_forward /tmp/bench/distr-bench "${cooperative[@]}" --head-dims 128 --group-sizes 1
    ncu_one cooperative-g2-d64 cooperative_forward /tmp/bench/distr-bench "${cooperative[@]}" --head-dims 64 --group-sizes 2
    exit 0
fi
ncu_one exact tensor_core_forward /tmp/bench/distr-bench "${shape[@]}" --group-sizes 1
ncu_one g2-sample tensor_core_forward /tmp/bench/distr-bench "${shape[@]}" --group-sizes 2
ncu_one g2-sampled-keys tensor_core_forward /tmp/bench/distr-bench "${shape[@]}" --group-sizes 2 --representatives sampled-keys
ncu_one fa2 flash python3 .gpu/kernel/sdpa_baseline.py --n 4096 --d 64
