#!/usr/bin/env bash
# Tensor-core tiling sweep in one device call: the on-device check of every tiling named in
# TILINGS (each variant against the tensor-op reference), each timed next to the default at
# N = 8192 (d = 64 and 128, G = 1, 2, 4, fp16, B = 4, H = 16, l = 128), and an Nsight Compute
# profile of the default tiling at d = 64 for G = 1 and 2. Expects the stripped CUDA build of
# distr-bench xz-compressed as .gpu/kernel/distr-bench.xz (README.md); writes everything under
# $OUT.
set -u
out=${OUT:-benchmarks/results/latest}
tilings=${TILINGS:-4x2x64r,4x2x64,4x2x32,8x1x64r,8x1x32r}
mkdir -p "$out" /tmp/bench
bin=/tmp/bench/distr-bench
xz -dc .gpu/kernel/distr-bench.xz > "$bin" && chmod +x "$bin" || exit 2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn
# NVRTC takes seconds per kernel: keep compiled kernels between the runs below.
printf '[compilation]\ncache = "local"\n' > cubecl.toml
"$bin" --check --tilings "$tilings" --block-rows 128 --lengths 8192 --head-dims 64,128 --causal false \
    --group-sizes 1,2,4 --burn-max-len 0 --budget-ms 400 --json > "$out/sweep.jsonl" 2> "$out/sweep.log"
echo "sweep exit $?"
grep -E "FAILED|refused|^check:" "$out/sweep.log"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
for group in 1 2; do
    timeout 90 "$ncu" --clock-control none -k regex:tensor_core_forward --launch-skip 3 --launch-count 1 \
        --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats \
        --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
        "$bin" --block-rows 128 --lengths 8192 --head-dims 64 --causal false --group-sizes "$group" \
        --burn-max-len 0 --budget-ms 1 > "$out/ncu-d64-g$group.txt" 2>&1
    echo "ncu G=$group exit $?"
done
grep -E "(exact_kernel|distr_g)[^ ]* +N=" "$out/sweep.log"
