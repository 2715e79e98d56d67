#!/usr/bin/env bash
# SmolLM2-135M training step (bf16, random weights) at 2048 and 8192 tokens, exact vs G=2,
# on the fused tensor-core backward (grouped calls through their expanded query).
set -u
out=${OUT:?}
STEPS=model MODEL_S=${MODEL_S:-520} TRAIN_CONTEXT=${TRAIN_CONTEXT:-2048,8192} AUTOTUNE_LEVEL=minimal OUT=$out bash benchmarks/backward_gpu.sh
