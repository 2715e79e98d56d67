#!/usr/bin/env bash
# ViT-S latency on the lent GPU (see ../RESULTS.md, "GPU latency"): the vit_s_focus
# architecture with random weights (the 97 MB ONNX file does not fit a device call next to the
# binaries; latency does not depend on the weight values), 224x224 (257 tokens) and 518x518
# (1370 tokens), batch 1 and 8, exact vs DistrAttention G=2 and G=4. Expects the CUDA build of
# distr-vit as .gpu/vit/distr-vit.xz; writes under $OUT.
set -uo pipefail
xz -dc .gpu/vit/distr-vit.xz > /tmp/distr-vit && chmod +x /tmp/distr-vit || exit 2
for run in "1 2" "8 2" "8 4"; do
    set -- $run
    timeout "${VIT_SECONDS:-70}" /tmp/distr-vit bench --backend cuda --sizes 224,518 --batch "$1" \
        --attention distr --group-size "$2" --warmup 3 --iters 20 \
        >> "$OUT/vit-bench-cuda.jsonl" 2>> "$OUT/vit-bench-cuda.log"
    echo "vit bench batch $1 G=$2 exit $?"
done
cat "$OUT/vit-bench-cuda.jsonl"
