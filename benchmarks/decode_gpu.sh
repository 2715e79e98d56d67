#!/usr/bin/env bash
# Decode-shaped attention on the lent GPU, one device call:
#   1. the kernel-vs-reference check (`distr-bench --check`: the whole grid, decode shapes
#      included), before any timing;
#   2. one decode step (QUERY_ROWS query rows, default 1) against caches of LENGTHS keys, causal,
#      for SmolLM2-135M's heads (9 query heads on 3 key heads, d = 64) and Llama 3 8B's (32 on 8,
#      d = 128): split-key decode (exact and G = 2), the forward kernel it replaces
#      (`+forward-kernel`) and the tensor-op path (`tensor_ops`, what long caches took before);
#   3. PyTorch on the same shapes (benchmarks/sdpa_decode.py).
# Expects the stripped CUDA build of distr-bench xz-compressed as .gpu/kernel/distr-bench.xz;
# writes everything under $OUT.
set -u
out=${OUT:-benchmarks/results/latest}
mkdir -p "$out" /tmp/bench
xz -dc .gpu/kernel/distr-bench.xz > /tmp/bench/distr-bench && chmod +x /tmp/bench/distr-bench || exit 2
bench=/tmp/bench/distr-bench
lengths=${LENGTHS:-512,2048,8192,32768}
rows=${QUERY_ROWS:-1}
dtype=${DTYPE:-bf16}
case "$dtype" in f16) torch_dtype=float16 ;; bf16) torch_dtype=bfloat16 ;; *) echo "DTYPE=$dtype: expected f16 or bf16"; exit 2 ;; esac
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn
printf '[compilation]\ncache = "local"\n' > cubecl.toml

timeout "${CHECK_S:-240}" "$bench" --check --json --burn-max-len 0 --budget-ms 1 --lengths 256 --head-dims 64 \
    --group-sizes 1 --causal false > /dev/null 2> "$out/check.log"
echo "check exit $?"; grep -E "FAILED|refused|panicked|^check:" "$out/check.log" | head -30

# name heads kv_heads head_dim
for model in "smollm2 9 3 64" "llama3-8b 32 8 128"; do
    set -- $model
    timeout "${TIMING_S:-100}" "$bench" --json --burn-max-len 0 --budget-ms 200 --batch 1 --heads "$2" --kv-heads "$3" \
        --head-dims "$4" --lengths "$lengths" --query-rows "$rows" --dtype "$dtype" --group-sizes 1,2 --causal true \
        --representatives mean --variants forward-kernel > "$out/decode-$1.jsonl" 2> "$out/decode-$1.log"
    echo "$1 exit $?"
    timeout "${SDPA_S:-60}" python3 benchmarks/sdpa_decode.py --b 1 --h "$2" --kv-heads "$3" --d "$4" --nq "$rows" \
        --n "$lengths" --dtype "$torch_dtype" > "$out/sdpa-decode-$1.jsonl" 2> "$out/sdpa-decode-$1.log"
    echo "$1 sdpa exit $?"
done
tail -n 12 "$out"/decode-*.log
cat "$out"/sdpa-decode-*.jsonl
