#!/usr/bin/env bash
# The order in which the causal forward's blocks are launched (issue 12), in one device call:
# the on-device check with the head groups named in HEAD_GROUPS forced, then, in ROUNDS
# alternating rounds, the causal forward (exact and G = 2, B = 4, H = 16, fp16, l = 128) with
# the default order and with each forced head group (`--head-groups`: that many (batch, head)
# pairs' blocks launched together, longest first), and PyTorch's SDPA on the same shapes.
# Expects the stripped CUDA build in .gpu/kernel/distr-bench.xz and sdpa_baseline.py beside it;
# writes everything under $OUT.
set -u
out=${OUT:-benchmarks/results/latest}
groups=${HEAD_GROUPS:-2,4,8,16,64}
lengths=${LENGTHS:-4096,8192,16384}
mkdir -p "$out" /tmp/bench
xz -dc .gpu/kernel/distr-bench.xz > /tmp/bench/distr-bench && chmod +x /tmp/bench/distr-bench || exit 2
bench=/tmp/bench/distr-bench
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn CUBECL_AUTOTUNE_LEVEL=minimal
printf '[compilation]\ncache = "local"\n' > cubecl.toml
common=(--block-rows 128 --burn-max-len 0 --json)
timeout "${CHECK_S:-200}" "$bench" --check --head-groups "$groups" "${common[@]}" --budget-ms 1 --lengths 1024 \
    --head-dims 64 --group-sizes 1 --causal false > /dev/null 2> "$out/check.log"
echo "check exit $?"; grep -E "FAILED|refused|panicked|^check:" "$out/check.log" | head -20
for round in $(seq "${ROUNDS:-2}"); do
    timeout "${ROUND_S:-150}" "$bench" "${common[@]}" --budget-ms 300 --lengths "$lengths" --head-dims 64,128 \
        --group-sizes 1,2 --causal true --head-groups "$groups" 2>> "$out/grid.log" \
        | sed "s/^{/{\"round\":$round,/" >> "$out/grid.jsonl"
    echo "round $round exit $?"
done
rm -f cubecl.toml
python3 .gpu/kernel/sdpa_baseline.py --n "$lengths" --d 64,128 --causal > "$out/sdpa.jsonl" 2> "$out/sdpa.log"
echo "sdpa exit $?"
