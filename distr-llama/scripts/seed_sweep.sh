#!/usr/bin/env bash
# Seed-averaged perplexity of DistrAttention's variants (G = 2 in every layer) in SmolLM2-135M
# on two held-out plays (Macbeth, The Tempest; prepare-corpus.sh), the first TOKENS tokens of
# each in one window: one `distr-llama perplexity --seeds N` per (setting, text), exact once
# per text, the Gram grouping once (it draws nothing). Raw JSON in
# benchmarks/results/llama-seeds/<setting>-<text>.json, then a Markdown table.
#
# Usage (workspace root): distr-llama/scripts/seed_sweep.sh [SEEDS] [TOKENS]   (default 10, 512);
# BACKEND (default ndarray; the rows marked flex in RESULTS.md ran with BACKEND=flex) picks the backend.
set -euo pipefail
seeds="${1:-10}"
tokens="${2:-512}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
model="${DISTR_MODELS_DIR:-$root/.cache/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
corpus="$root/.cache/corpus"
out="$root/benchmarks/results/llama-seeds"
backend="${BACKEND:-ndarray}"
bin="${DISTR_LLAMA_BIN:-cargo run -q --release -p distr-llama --features ndarray --}"
bash "$root/distr-llama/scripts/prepare-corpus.sh" "$corpus"
mkdir -p "$out"
texts=("macbeth|$corpus/heldout/tragedies/macbeth.md" "the-tempest|$corpus/heldout/romances/the-tempest.md")

# `projected` (tensor-op path only, the slowest) was left out of the 2026-12-02 run for time;
# its single-draw figures are in RESULTS.md's earlier tables.
settings=(
  "exact|--attention exact|1"
  "sample|--attention distr --group-size 2 --representative sample"
  "mean|--attention distr --group-size 2 --representative mean"
  "mean-gram|--attention distr --group-size 2 --representative mean --grouping gram|1"
  "mean-gram-key-weighted|--attention distr --group-size 2 --representative mean --grouping gram-key-weighted|1"
  "mean-gram-key-distance|--attention distr --group-size 2 --representative mean --grouping gram-key-distance|1"
  "sampled-keys|--attention distr --group-size 2 --representative sampled-keys"
  "mean-gram-l64|--attention distr --group-size 2 --representative mean --grouping gram --block-rows 64|1"
  "mean-gram-l32|--attention distr --group-size 2 --representative mean --grouping gram --block-rows 32|1"
  "mean-gram-l16|--attention distr --group-size 2 --representative mean --grouping gram --block-rows 16|1"
  "mean-gram-key-weighted-l64|--attention distr --group-size 2 --representative mean --grouping gram-key-weighted --block-rows 64|1"
  "mean-gram-key-weighted-l32|--attention distr --group-size 2 --representative mean --grouping gram-key-weighted --block-rows 32|1"
  "mean-gram-key-weighted-l16|--attention distr --group-size 2 --representative mean --grouping gram-key-weighted --block-rows 16|1"
  "mean-gram-l8|--attention distr --group-size 2 --representative mean --grouping gram --block-rows 8|1"
  "mean-l8|--attention distr --group-size 2 --representative mean --block-rows 8"
  "mean-gram-key-weighted-l8|--attention distr --group-size 2 --representative mean --grouping gram-key-weighted --block-rows 8|1"
  "mean-gram-key-weighted-l4|--attention distr --group-size 2 --representative mean --grouping gram-key-weighted --block-rows 4|1"
)

for entry in "${settings[@]}"; do
  IFS='|' read -r name options draws <<< "$entry"
  for text_entry in "${texts[@]}"; do
    IFS='|' read -r text path <<< "$text_entry"
    file="$out/$name-$text.json"
    [ -s "$file" ] && continue
    # shellcheck disable=SC2086
    $bin perplexity --backend "$backend" --model "$model" --text "$path" --max-tokens "$tokens" --context "$tokens" \
      $options --seeds "${draws:-$seeds}" --json > "$file"
    echo "done $name $text" >&2
  done
done

python3 - "$out" "${settings[@]}" <<'PY'
import json, sys
out, settings = sys.argv[1], sys.argv[2:]
texts = ["macbeth", "the-tempest"]
exact = {t: json.load(open(f"{out}/exact-{t}.json"))["perplexity"] for t in texts}
print("| setting | options | draws | " + " | ".join(f"{t}: perplexity (draw range), x exact" for t in texts) + " |")
print("| --- | --- | --- | " + " --- |" * len(texts))
for entry in settings:
    name, options = entry.split("|")[:2]
    cells, draws = [], 1
    for t in texts:
        r = json.load(open(f"{out}/{name}-{t}.json"))
        draws = r["seeds"]
        lo, hi = r["perplexity_range"]
        cells.append(f"{r['perplexity']:.2f} ({lo:.2f}-{hi:.2f}), {r['perplexity'] / exact[t]:.2f}x")
    print(f"| {name} | `{options}` | {draws} | " + " | ".join(cells) + " |")
PY
