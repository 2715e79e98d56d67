#!/usr/bin/env bash
# One call: the backward check on the device, the backward grid causal and not, SDPA's
# backward anchors causal and not.
set -u
out=${OUT:?}
STEPS=check CHECK_S=120 OUT=$out bash benchmarks/backward_gpu.sh
mkdir -p /tmp/bench
bench=/tmp/bench/distr-bench
timeout 200 "$bench" --backward --json --block-rows 128 --budget-ms 150 --reference-max-len 0 \
    --lengths 1024,4096,16384 --head-dims 64,128 --group-sizes 1,2 --causal false,true > "$out/backward.jsonl" 2> "$out/backward.log"
echo "grid exit $?"; grep -E "MiB|skipping|expanded" "$out/backward.log" | tail -40
cd benchmarks
timeout 35 python3 sdpa_backward.py --n 1024,4096,16384 --d 64,128 > "$out/sdpa_backward.jsonl" 2> "$out/sdpa_backward.log"
timeout 30 python3 sdpa_backward.py --n 1024,4096,16384 --d 64,128 --causal > "$out/sdpa_backward_causal.jsonl" 2> "$out/sdpa_backward_causal.log"
echo "sdpa exit $?"; cut -c1-160 "$out"/sdpa_backward*.jsonl
