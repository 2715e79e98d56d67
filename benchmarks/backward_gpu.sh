#!/usr/bin/env bash
# Training on the lent GPU, one device call: the fused backward's gradients checked against the
# reference on the device (`distr-bench --check --backward`), then the backward alone, forward
# and backward, and the reference's forward and backward (up to REFERENCE_MAX_LEN) for exact
# attention and G = 2 over LENGTHS x d = 64, 128 (CAUSAL, default false), with the memory each
# leaves reserved; PyTorch's FlashAttention-2 and cuDNN backward on the same grid
# (sdpa_backward.py). Expects the stripped CUDA build xz-compressed as
# .gpu/kernel/distr-bench.xz (carry .gpu/kernel); writes everything under $OUT.
set -u
out=${OUT:-benchmarks/results/latest}
mkdir -p "$out" /tmp/bench
xz -dc .gpu/kernel/distr-bench.xz > /tmp/bench/distr-bench && chmod +x /tmp/bench/distr-bench || exit 2
bench=/tmp/bench/distr-bench
lengths=${LENGTHS:-1024,4096,16384}
causal=${CAUSAL:-false}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn
printf '[compilation]\ncache = "local"\n' > cubecl.toml

timeout "${CHECK_S:-150}" "$bench" --backward --check --block-rows 128 --burn-max-len 0 --reference-max-len 0 \
    --budget-ms 1 --lengths 256 --head-dims 64 --group-sizes 1 --causal false > /dev/null 2> "$out/check.log"
echo "check exit $?"; grep -E "FAILED|refused|panicked|^check:" "$out/check.log" | head -30

timeout "${GRID_S:-330}" "$bench" --backward --json --block-rows 128 --budget-ms 300 \
    --reference-max-len "${REFERENCE_MAX_LEN:-4096}" --lengths "$lengths" --head-dims 64,128 --group-sizes 1,2 \
    --causal "$causal" > "$out/backward.jsonl" 2> "$out/backward.log"
echo "grid exit $?"; tail -12 "$out/backward.log"

flag=""; [ "$causal" = true ] && flag=--causal
timeout "${SDPA_S:-90}" python3 benchmarks/sdpa_backward.py --n "$lengths" --d 64,128 $flag > "$out/sdpa_backward.jsonl" 2> "$out/sdpa_backward.log"
echo "sdpa exit $?"; cat "$out/sdpa_backward.jsonl" | cut -c1-200
