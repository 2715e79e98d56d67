#!/usr/bin/env bash
# DistrAttention variants on SmolLM2-135M-Instruct, held-out text: the first 1024 tokens of
# Macbeth (held out of fine-tuning by scripts/prepare-corpus.sh), one window of 1024.
# Representative sample vs mean (and any further representatives given in
# REPRESENTATIVES), block rows 64 vs 128, group sizes 2 and 4. JSON lines to the file given,
# default benchmarks/results/llama-variants-<backend>.jsonl.
#
#   distr-llama/scripts/variants_sweep.sh [BACKEND] [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
backend="${1:-ndarray}"
out="${2:-benchmarks/results/llama-variants-$backend.jsonl}"
models="${DISTR_MODELS_DIR:-.cache/models}"
bin="${DISTR_LLAMA_BIN:-cargo run -q -p distr-llama --features ndarray --}"
representatives="${REPRESENTATIVES:-sample mean}"
distr-llama/scripts/prepare-corpus.sh
mkdir -p "$(dirname "$out")"
: > "$out"
run() {
    $bin perplexity --backend "$backend" --model "$models/SmolLM2-135M-Instruct.Q4_1.gguf" \
        --text .cache/corpus/heldout/tragedies/macbeth.md --max-tokens 1024 --context 1024 --json "$@" \
        | tee -a "$out"
}
run --attention exact
for group in 2 4; do
    for rows in 128 64; do
        for representative in $representatives; do
            run --attention distr --group-size "$group" --representative "$representative" \
                --block-rows "$rows" --compare-exact
        done
    done
done
