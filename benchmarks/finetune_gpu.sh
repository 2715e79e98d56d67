#!/usr/bin/env bash
# Fine-tuning SmolLM2-135M on the lent GPU: exact attention and DistrAttention side by side
# at equal budget, each with a held-out perplexity curve (`distr-llama finetune --eval-every`).
#
# Runs every setting of RUNS at once on the one card (one process each, same batches in the
# same order), with compiled kernels and autotune decisions kept in KERNEL_CACHE between
# processes and calls (`--kernel-cache`), and writes each run's JSON report and log under
# $OUT. A cold cache costs minutes of compilation and autotuning in the first step and in the
# first evaluation: a first call with MODEL pointing at random weights of the same shapes
# (`random_weights.py`-style, STEPS=3) fills it; the long runs on the real weights follow on
# the same machine.
#
#   DISTR_LLAMA  the CUDA build of distr-llama (default /tmp/ft/distr-llama)
#   MODEL        .gguf or Hugging Face directory (default /tmp/ft/model.gguf)
#   CORPUS       directory with train/ and heldout/ (scripts/prepare-corpus.sh's layout)
#   STEPS        optimizer steps (default 1000: 1000 x 8 x 256 = 2,048,000 training tokens)
#   EVAL_EVERY   held-out evaluation interval in steps (default 100)
#   RUNS         names among exact, g2-gram (Mean, key-weighted Gram groups, l = 128), g2-gram-l64
#                (the same in blocks of 64 rows, the smallest the kernels take), g2-gram-l16 and
#                g2-gram-l8 (blocks of 16 and 8 rows: exact attention on an expanded query grouped
#                on the host; a cold l = 8 run on an H100 did not finish its first evaluation in
#                540 s), g2-lsh (Mean, LSH, l = 128) (default: the first three)
#   LIMIT_S      time limit of each run (default 540)
#   LOG_EVERY    progress line interval in steps (default 50)
set -u
out=${OUT:-benchmarks/results/latest}
mkdir -p "$out"
bin=${DISTR_LLAMA:-/tmp/ft/distr-llama}
model=${MODEL:-/tmp/ft/model.gguf}
corpus=${CORPUS:-/tmp/ft/corpus}
cache=${KERNEL_CACHE:-/tmp/ft/kernel-cache}
export RUST_LOG=warn CUDA_CACHE_PATH=${CUDA_CACHE_PATH:-/tmp/ft/nv-cache} CUDA_CACHE_MAXSIZE=4294967296
export CUBECL_AUTOTUNE_LEVEL=${AUTOTUNE_LEVEL:-minimal}

declare -A attention=(
    [exact]="--attention exact"
    [g2-gram]="--attention distr --group-size 2 --representative mean --grouping gram-key-weighted"
    [g2-gram-l64]="--attention distr --group-size 2 --representative mean --grouping gram-key-weighted --block-rows 64"
    [g2-gram-l16]="--attention distr --group-size 2 --representative mean --grouping gram-key-weighted --block-rows 16"
    [g2-gram-l8]="--attention distr --group-size 2 --representative mean --grouping gram-key-weighted --block-rows 8"
    [g2-lsh]="--attention distr --group-size 2 --representative mean"
)
runs=${RUNS:-exact g2-gram g2-gram-l64}
for run in $runs; do
    # shellcheck disable=SC2086 # the attention options are words
    timeout "${LIMIT_S:-540}" "$bin" --kernel-cache "$cache" finetune --backend cuda --model "$model" ${attention[$run]} \
        --train-text "$corpus/train" \
        --eval-text "$corpus/heldout/tragedies/macbeth.md" --eval-text "$corpus/heldout/romances/the-tempest.md" \
        --eval-tokens 4096 --eval-context 1024 --eval-every "${EVAL_EVERY:-100}" \
        --steps "${STEPS:-1000}" --batch-size 8 --seq-len 256 --learning-rate 2e-4 --warmup-steps 30 \
        --log-every "${LOG_EVERY:-50}" --json > "$out/$run.json" 2> "$out/$run.log" &
done
wait
for run in $runs; do
    echo "== $run"; grep -E "perplexity|step [0-9]+/|error|panicked" "$out/$run.log" | tail -8
done
du -sh "$cache" "$CUDA_CACHE_PATH" 2>/dev/null
