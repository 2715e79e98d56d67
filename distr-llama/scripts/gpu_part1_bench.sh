#!/usr/bin/env bash
# First of two back-to-back device calls (see ../RESULTS.md, "How the GPU runs were made"):
# unpacks the CUDA build of distr-llama and the first part of the GGUF into /tmp/llama
# (kept while the machine stays warm), records the card, and measures prefill/decode speed
# with random weights in SmolLM2-135M's configuration (latency does not depend on weight
# values). Expects .gpu/llama/a/{distr-llama.xz,config.tar.xz,gguf.part-a}; writes to $OUT.
set -uo pipefail
work=/tmp/llama
mkdir -p "$work"
cp .gpu/llama/a/gguf.part-a "$work/" || exit 2
xz -dc .gpu/llama/a/distr-llama.xz > "$work/distr-llama" && chmod +x "$work/distr-llama" || exit 2
tar -xJf .gpu/llama/a/config.tar.xz -C "$work" || exit 2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/llama-card.txt"
for group in 2 4; do
    timeout "${BENCH_SECONDS:-100}" "$work/distr-llama" bench --backend cuda --model "$work/smollm2-config" \
        --random-weights --context 512,2048,8192 --decode-tokens 32 --repeats 3 \
        --attention distr --group-size "$group" --representative mean \
        >> "$OUT/llama-bench-cuda.jsonl" 2>> "$OUT/llama-bench-cuda.log"
    echo "bench G=$group exit $?"
done
tail -n 20 "$OUT/llama-bench-cuda.log"
