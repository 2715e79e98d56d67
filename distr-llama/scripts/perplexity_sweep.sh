#!/usr/bin/env bash
# Perplexity, top-1 accuracy and top-1 agreement with exact attention of SmolLM2-135M-Instruct
# on the first 1024 tokens of Hamlet (distr-llama/data), one window, for exact attention and
# DistrAttention settings. Writes JSON lines (one per setting) to the file given, default
# benchmarks/results/llama-perplexity-<backend>.jsonl.
#
#   distr-llama/scripts/perplexity_sweep.sh [BACKEND] [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
backend="${1:-ndarray}"
out="${2:-benchmarks/results/llama-perplexity-$backend.jsonl}"
models="${DISTR_MODELS_DIR:-.cache/models}"
bin="${DISTR_LLAMA_BIN:-cargo run -q -p distr-llama --features ndarray --}"
mkdir -p "$(dirname "$out")"
: > "$out"
run() {
    $bin perplexity --backend "$backend" --model "$models/SmolLM2-135M-Instruct.Q4_1.gguf" \
        --text distr-llama/data/hamlet-act1-scene1.md --max-tokens 1024 --context 1024 --json "$@" \
        | tee -a "$out"
}
run --attention exact
for group in 2 4 8; do
    for representative in sample mean; do
        run --attention distr --group-size "$group" --representative "$representative" --compare-exact
    done
done
run --attention distr --group-size 2 --representative mean --block-rows 32 --compare-exact
for exact_first in 15 28; do
    run --attention distr --group-size 2 --representative mean --exact-first-layers "$exact_first" --compare-exact
done
run --attention distr --group-size 4 --representative mean --exact-first-layers 28 --compare-exact
