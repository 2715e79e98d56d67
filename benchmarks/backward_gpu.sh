#!/usr/bin/env bash
# Training on the lent GPU, one device call: the fused backward's gradients checked against the
# reference on the device (`distr-bench --check --backward`), then the backward alone, forward
# and backward, and the reference's forward and backward (up to REFERENCE_MAX_LEN) for exact
# attention and G = 2 over LENGTHS x d = 64, 128 (CAUSAL, default false), with the memory each
# leaves reserved; PyTorch's FlashAttention-2 and cuDNN backward on the same grid
# (sdpa_backward.py); then, where .gpu/models/distr-llama.xz is there, a SmolLM2-135M training
# step (forward, loss, backward; random weights, bf16) at TRAIN_CONTEXT tokens, exact against
# G = 2. Expects the stripped CUDA builds xz-compressed as .gpu/kernel/distr-bench.xz and
# .gpu/models/distr-llama.xz with .gpu/models/smollm2/{config,tokenizer}.json (what
# `distr-llama export` writes; carry .gpu/kernel and .gpu/models); writes everything under $OUT.
# STEPS (default check,grid,sdpa,model) picks the steps of this call; BENCH_XZ another build of
# distr-bench, GROUP_SIZES (default 1,2) the grid's group sizes.
set -u
out=${OUT:-benchmarks/results/latest}
mkdir -p "$out" /tmp/bench
xz -dc "${BENCH_XZ:-.gpu/kernel/distr-bench.xz}" > /tmp/bench/distr-bench && chmod +x /tmp/bench/distr-bench || exit 2
bench=/tmp/bench/distr-bench
lengths=${LENGTHS:-1024,4096,16384}
causal=${CAUSAL:-false}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn
printf '[compilation]\ncache = "local"\n' > cubecl.toml
steps=",${STEPS:-check,grid,sdpa,model},"
step() { [[ "$steps" == *",$1,"* ]]; }

step check && { timeout "${CHECK_S:-150}" "$bench" --backward --check --block-rows 128 --burn-max-len 0 --reference-max-len 0 \
    --budget-ms 1 --lengths 256 --head-dims 64 --group-sizes 1 --causal false > /dev/null 2> "$out/check.log"
echo "check exit $?"; grep -E "FAILED|refused|panicked|^check:" "$out/check.log" | head -30; }

step grid && { timeout "${GRID_S:-330}" "$bench" --backward --json --block-rows 128 --budget-ms 300 \
    --reference-max-len "${REFERENCE_MAX_LEN:-4096}" --lengths "$lengths" --head-dims 64,128 --group-sizes "${GROUP_SIZES:-1,2}" \
    --causal "$causal" > "$out/backward.jsonl" 2> "$out/backward.log"
echo "grid exit $?"; grep -E "MiB|skipping" "$out/backward.log" | tail -30; }

flag=""; [ "$causal" = true ] && flag=--causal
step sdpa && { timeout "${SDPA_S:-90}" python3 benchmarks/sdpa_backward.py --n "$lengths" --d 64,128 $flag \
    > "$out/sdpa_backward.jsonl" 2> "$out/sdpa_backward.log"
echo "sdpa exit $?"; cut -c1-200 "$out/sdpa_backward.jsonl"; }

# The model step logs what Burn's autotuner chooses, with its time, to autotune.log (every
# new shape is tuned, kernels compiled, in the first step at each length: each step's time,
# warm-up included, is in llama_train.log). AUTOTUNE_LEVEL (minimal, balanced (CubeCL's
# default), extensive, full) sets how many candidates it tries.
step model && [ -f .gpu/models/distr-llama.xz ] && {
xz -dc .gpu/models/distr-llama.xz > /tmp/bench/distr-llama && chmod +x /tmp/bench/distr-llama
printf '[compilation]\ncache = "local"\n[autotune.logger]\nlevel = "minimal"\nfile = "%s"\n' "$out/autotune.log" > cubecl.toml
CUBECL_AUTOTUNE_LEVEL="${AUTOTUNE_LEVEL:-balanced}" timeout "${MODEL_S:-200}" /tmp/bench/distr-llama bench --train --backend cuda --dtype bf16 --random-weights \
    --model .gpu/models/smollm2 --context "${TRAIN_CONTEXT:-2048,8192}" --repeats 2 --attention distr --group-size 2 \
    --json > "$out/llama_train.jsonl" 2> "$out/llama_train.log"
echo "model exit $?"; cat "$out/llama_train.jsonl"; tail -3 "$out/llama_train.log"; }
