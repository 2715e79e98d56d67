#!/usr/bin/env bash
# One device call: Nsight Compute on one launch each of our tensor-core backward's key side
# (exact, d = 64, N = 4096, B = 4, H = 16, fp16, dQ formed there) causal and not, and of
# PyTorch FlashAttention-2's backward kernel on the same shapes: why our causal backward falls
# further behind FlashAttention-2 than the non-causal one (issue 14). Carry .gpu/vulkan (the
# CUDA build of distr-bench of commit 8b84e03, whose kernels this commit leaves unchanged).
set -u
out=$OUT
mkdir -p /tmp/bench
xz -dc .gpu/vulkan/distr-bench-cuda.xz > /tmp/bench/distr-bench && chmod +x /tmp/bench/distr-bench || exit 2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
printf '[compilation]\ncache = "local"\n' > cubecl.toml
sections=(--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats
    --section SchedulerStats --section ComputeWorkloadAnalysis --section InstructionStats)
ncu_one() { # name, kernel regex, command...
    local name=$1 kernel=$2
    shift 2
    timeout 100 ncu --clock-control none -k "regex:$kernel" --launch-skip 2 --launch-count 1 "${sections[@]}" "$@" \
        > "$out/ncu-$name.txt" 2> "$out/ncu-$name.log"
    echo "ncu $name exit $?"
}
ours=(--backward --lengths 4096 --head-dims 64 --group-sizes 1 --block-rows 128 --budget-ms 1 --burn-max-len 0 --reference-max-len 0)
ncu_one ours-noncausal tensor_core_backward_keys /tmp/bench/distr-bench "${ours[@]}" --causal false
ncu_one ours-causal tensor_core_backward_keys /tmp/bench/distr-bench "${ours[@]}" --causal true
ncu_one fa2-noncausal flash_bwd_dq_dk_dv python3 benchmarks/sdpa_backward.py --n 4096 --d 64
ncu_one fa2-causal flash_bwd_dq_dk_dv python3 benchmarks/sdpa_backward.py --n 4096 --d 64 --causal
# Timing of the same shapes outside the profiler, for the ratios.
timeout 60 /tmp/bench/distr-bench --backward --json --lengths 4096,16384 --head-dims 64 --group-sizes 1 --block-rows 128 \
    --budget-ms 200 --burn-max-len 0 --reference-max-len 0 --causal true > "$out/backward-causal.jsonl" 2> "$out/backward-causal.log"
echo "grid exit $?"
timeout 60 python3 benchmarks/sdpa_backward.py --n 4096,16384 --d 64 --causal > "$out/sdpa_backward-causal.jsonl" 2>&1
echo "sdpa exit $?"
grep -h -E "Duration|Elapsed Cycles|SM Active Cycles|Registers Per|Achieved Occupancy|Waves Per SM|Executed Instructions  |Issue Slots Busy|No Eligible|Grid Size|Block Size" "$out"/ncu-*.txt | head -80
