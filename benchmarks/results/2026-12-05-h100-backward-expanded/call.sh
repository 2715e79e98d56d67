#!/usr/bin/env bash
# One call: the backward check on the device (grouped calls now on the tensor-core backward via
# their expanded query; bf16), the backward grid causal and not, SDPA's backward anchors.
set -u
out=${OUT:?}
mkdir -p /tmp/bench
xz -dc .gpu/kernel/distr-bench.xz > /tmp/bench/distr-bench && chmod +x /tmp/bench/distr-bench || exit 2
bench=/tmp/bench/distr-bench
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn
printf '[compilation]\ncache = "local"\n' > cubecl.toml
timeout ${CHECK_S:-230} "$bench" --backward --check --check-only "${CHECK_ONLY:-G=2,G=4,BF16}" --block-rows 128 --burn-max-len 0 --reference-max-len 0 \
    --budget-ms 1 --lengths 256 --head-dims 64 --group-sizes 1 --causal false > /dev/null 2> "$out/check.log"
echo "check exit $?"; grep -E "^check" "$out/check.log" | cut -c1-170
timeout ${GRID_S:-200} "$bench" --backward --json --block-rows 128 --budget-ms 150 --reference-max-len 0 \
    --lengths 1024,4096,16384 --head-dims 64,128 --group-sizes 1,2 --causal false,true > "$out/backward.jsonl" 2> "$out/backward.log"
echo "grid exit $?"; grep -E "MiB|skipping|expanded|panicked" "$out/backward.log" | tail -40
cd benchmarks
timeout 35 python3 sdpa_backward.py --n 1024,4096,16384 --d 64,128 > "$out/sdpa_backward.jsonl" 2> "$out/sdpa_backward.log"
timeout 30 python3 sdpa_backward.py --n 1024,4096,16384 --d 64,128 --causal > "$out/sdpa_backward_causal.jsonl" 2> "$out/sdpa_backward_causal.log"
echo "sdpa exit $?"; cut -c1-160 "$out"/sdpa_backward*.jsonl
