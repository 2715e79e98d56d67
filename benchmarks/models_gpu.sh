#!/usr/bin/env bash
# Model-level speed on the lent GPU: our DINOv2-S/14 backbone and SmolLM2-135M against Hugging
# Face transformers (PyTorch, SDPA attention) in one device call, random weights, batch 1, in
# half precision (DTYPE=bf16 by default; f16 also runs; transformers gets the same dtype).
#
# MODELS=llama (or vit) runs one of the two; both by default. BACKEND=wgpu runs ours on Burn's
# wgpu backend instead of CUDA: with builds made with `--features vulkan`, through NVIDIA's
# Vulkan driver (its loader carried in .gl/, see vulkan_env.sh), where half-precision attention
# takes the cooperative-matrix kernel; transformers stays on CUDA.
#
# Expects, under .gpu/models/ (carry it): distr-vit.xz and distr-llama.xz (the CUDA release
# builds, stripped; only those MODELS names; BINARIES names another folder), and smollm2/ holding the config.json and tokenizer.json that
# `distr-llama export` writes for SmolLM2-135M-Instruct (the weights stay behind: latency does not
# depend on their values, and both sides use seeded random ones). Writes JSON lines and logs
# under $OUT; benchmarks/models_table.py turns them into the README's model table.
set -uo pipefail
dtype=${DTYPE:-bf16}
case "$dtype" in f16) torch_dtype=float16 ;; bf16) torch_dtype=bfloat16 ;; *) echo "DTYPE=$dtype: expected f16 or bf16"; exit 2 ;; esac
models=${MODELS:-vit llama}
work=/tmp/models
mkdir -p "$work"
for model in $models; do
    xz -dc "${BINARIES:-.gpu/models}/distr-$model.xz" > "$work/distr-$model" && chmod +x "$work/distr-$model" || exit 2
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
backend=${BACKEND:-cuda}
[ "$backend" = wgpu ] && source benchmarks/vulkan_env.sh "$OUT/vulkan-env.txt"
hf_sizes=""
hf_context=""

# Ours: exact and DistrAttention G=2 (mean representative, the default) in each run.
if [[ " $models " == *" vit "* ]]; then
hf_sizes=224,518,1036
timeout "${VIT_SECONDS:-150}" "$work/distr-vit" bench --backend "$backend" --dtype "$dtype" --backbone-only \
    --sizes 224,518,1036 --attention distr --group-size 2 --warmup 5 --iters 20 --json \
    > "$OUT/vit.jsonl" 2> "$OUT/vit.log"
echo "distr-vit bench exit $?"
fi
if [[ " $models " == *" llama "* ]]; then
hf_context=512,2048,8192
timeout "${LLAMA_SECONDS:-240}" "$work/distr-llama" bench --backend "$backend" --dtype "$dtype" --random-weights \
    --model .gpu/models/smollm2 --context 512,2048,8192 --decode-tokens 32 --repeats 3 \
    --attention distr --group-size 2 --json \
    > "$OUT/llama.jsonl" 2> "$OUT/llama.log"
echo "distr-llama bench exit $?"
fi

# Theirs, same card, same call.
timeout "${HF_SECONDS:-150}" python3 benchmarks/hf_models.py --llama-config .gpu/models/smollm2/config.json \
    --dtype "$torch_dtype" --sizes "$hf_sizes" --context "$hf_context" > "$OUT/transformers.jsonl" 2> "$OUT/transformers.log"
echo "transformers exit $?"
cat "$OUT"/*.jsonl
