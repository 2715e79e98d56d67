#!/usr/bin/env bash
# Where a short call's time goes (N = 1024, where G = 2 is slower than exact): the grid at
# B = 4 and B = 16 (a fixed per-call cost shrinks relative to work as the batch grows), the
# grouping stages removed one at a time, the pre-pass alone, and Nsight Compute's duration of each
# kernel of one call (transposition, pre-pass, forward) against the per-call time. Expects the
# build of run_gpu.sh in .gpu/kernel; writes $OUT.
set -u
out=${OUT:-benchmarks/results/latest}
mkdir -p "$out" /tmp/bench
xz -dc .gpu/kernel/distr-bench.xz > /tmp/bench/distr-bench && chmod +x /tmp/bench/distr-bench || exit 2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn CUBECL_AUTOTUNE_LEVEL=minimal
printf '[compilation]\ncache = "local"\n' > cubecl.toml
common=(--lengths "${LENGTHS:-1024}" --head-dims 64,128 --causal false --block-rows 128 --burn-max-len 0
    --budget-ms 300 --json --representatives sample,sampled-keys)
for batch in 4 16; do
    timeout 200 /tmp/bench/distr-bench "${common[@]}" --batch "$batch" --group-sizes 1,2 --grouping-alone \
        --variants default,identity-permutation,no-key-fusion >> "$out/grid.jsonl" 2>> "$out/grid.log"
    echo "grid batch $batch exit $?"
done
python3 .gpu/kernel/sdpa_baseline.py --n "${LENGTHS:-1024}" --d 64,128 >> "$out/sdpa.jsonl" 2>> "$out/sdpa.log"
# One call's kernels as the device runs them: skip the warm-up launches, then every kernel of a few calls.
for group in 1 2; do
    timeout 120 ncu --clock-control none --section SpeedOfLight --launch-skip 40 --launch-count 12 \
        /tmp/bench/distr-bench --lengths 1024 --head-dims 64 --causal false --block-rows 128 --budget-ms 1 \
        --burn-max-len 0 --group-sizes "$group" --representatives sampled-keys \
        > "$out/ncu-g$group.txt" 2> "$out/ncu-g$group.log"
    echo "ncu g$group exit $?"
    grep -E "^  [a-z_]+.*\(|Duration" "$out/ncu-g$group.txt" | head -40
done
