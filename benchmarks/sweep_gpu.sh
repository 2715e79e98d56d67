#!/usr/bin/env bash
# Tensor-core tiling sweep in one device call: the on-device check of every tiling named in
# TILINGS (each variant against the tensor-op reference), each timed next to the default at
# N = 8192 (d = 64 and 128, G = 1, 2, 4, fp16, B = 4, H = 16, l = 128), and an Nsight Compute
# profile of the default tiling at d = 64 for G = 1 and 2. Expects the stripped CUDA build of
# distr-bench in .gpu/kernel/ (README.md); writes everything under $OUT.
set -u
out=${OUT:-benchmarks/results/latest}
bin=${BENCH_BIN:-.gpu/kernel/distr-bench}
tilings=${TILINGS:-2x64p,2x32p,1x64p,1x32p,1x64}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn
"$bin" --check --tilings "$tilings" --block-rows 128 --lengths 8192 --head-dims 64,128 --causal false \
    --group-sizes 1,2,4 --burn-max-len 0 --budget-ms 400 --json > "$out/sweep.jsonl" 2> "$out/sweep.log"
echo "sweep exit $?"
grep -E "FAILED|refused|^check:" "$out/sweep.log"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
for group in 1 2; do
    timeout 90 "$ncu" --clock-control none -k regex:flash_forward_mma --launch-skip 3 --launch-count 1 \
        --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats \
        --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
        "$bin" --block-rows 128 --lengths 8192 --head-dims 64 --causal false --group-sizes "$group" \
        --burn-max-len 0 --budget-ms 1 > "$out/ncu-d64-g$group.txt" 2>&1
    echo "ncu G=$group exit $?"
done
grep -E "(exact_kernel|distr_g)[^ ]* +N=" "$out/sweep.log"
