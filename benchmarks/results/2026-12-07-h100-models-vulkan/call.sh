#!/usr/bin/env bash
# Sixth call: both models on wgpu/Vulkan in f16 (version 1 of the cooperative-matrix kernel)
# against transformers on CUDA.
set -u
O=${OUT:?}
R=/tmp/r; mkdir -p $R/models
start=$(date +%s)
BACKEND=wgpu DTYPE=f16 BINARIES=.gpu/vulkan-models OUT=$R/models VIT_SECONDS=150 LLAMA_SECONDS=240 HF_SECONDS=150 \
  bash benchmarks/models_gpu.sh > $R/models.txt 2>&1
echo "models $(( $(date +%s) - start )) s" | tee -a $R/steps.txt
grep exit $R/models.txt
tar -C /tmp -czf $O/r.tar.gz r
