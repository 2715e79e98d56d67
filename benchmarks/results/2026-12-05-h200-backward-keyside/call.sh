#!/usr/bin/env bash
# One call: dQ on the key side (atomics; new build, .gpu/kernel) against dQ on the query side
# (base build, .gpu/base): the new build's backward check, then both builds' backward grid
# (alternating, same card), then SDPA's backward anchors.
set -u
out=${OUT:?}
mkdir -p /tmp/bench
xz -dc .gpu/kernel/distr-bench.xz > /tmp/bench/new && chmod +x /tmp/bench/new || exit 2
xz -dc .gpu/base/distr-bench.xz > /tmp/bench/base && chmod +x /tmp/bench/base || exit 2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn
printf '[compilation]\ncache = "local"\n' > cubecl.toml
timeout ${CHECK_S:-200} /tmp/bench/new --backward --check --check-only "${CHECK_ONLY:-F16,BF16}" --block-rows 128 --burn-max-len 0 --reference-max-len 0 \
    --budget-ms 1 --lengths 256 --head-dims 64 --group-sizes 1 --causal false > /dev/null 2> "$out/check.log"
echo "check exit $?"; grep -E "^check" "$out/check.log" | cut -c1-170
grid() {
    timeout ${GRID_S:-100} /tmp/bench/$1 --backward --json --block-rows 128 --budget-ms 120 --reference-max-len 0 \
        --lengths 1024,4096,16384 --head-dims 64,128 --group-sizes 1,2 --causal false,true > "$out/$1-$2.jsonl" 2> "$out/$1-$2.log"
    echo "grid $1 $2 exit $?"; grep -E "panicked|error" "$out/$1-$2.log" | head -5
}
grid new 1; grid base 1; grid new 2; grid base 2
cd benchmarks
timeout 35 python3 sdpa_backward.py --n 1024,4096,16384 --d 64,128 > "$out/sdpa_backward.jsonl" 2> "$out/sdpa_backward.log"
timeout 30 python3 sdpa_backward.py --n 1024,4096,16384 --d 64,128 --causal > "$out/sdpa_backward_causal.jsonl" 2> "$out/sdpa_backward_causal.log"
echo "sdpa exit $?"
