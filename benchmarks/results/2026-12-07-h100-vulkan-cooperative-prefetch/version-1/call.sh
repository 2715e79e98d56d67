#!/usr/bin/env bash
# One device call: the cooperative-matrix kernel's new build against the base on Vulkan, then
# our CUDA tensor-core kernel for the ratio, then the new build at 64 block rows.
set -u
O=${OUT:?}
start=$(date +%s)
VULKAN=true BIN_DIR=.gpu/vulkan OUT=$O/ab LENGTHS=4096,16384,1024 CAUSAL=false,true GROUP_SIZES=1,2 \
  BURN_MAX_LEN=4096 ROUNDS=2 timeout -k 5 400 bash benchmarks/ab_gpu.sh > $O/ab.txt 2>&1
echo "ab rc=$? $(( $(date +%s) - start )) s" | tee -a $O/steps.txt
cat $O/ab.txt | tail -60
xz -dc .gpu/kernel/distr-bench.xz > /tmp/cuda && chmod +x /tmp/cuda
timeout -k 5 60 /tmp/cuda --json --lengths 4096,16384,1024 --head-dims 64,128 --group-sizes 1 --causal false,true \
  --burn-max-len 0 --budget-ms 300 --block-rows 128 > $O/cuda.jsonl 2> $O/cuda.log
echo "cuda rc=$? $(( $(date +%s) - start )) s" | tee -a $O/steps.txt
left=$(( 560 - ($(date +%s) - start) ))
if (( left > 40 )); then
  source benchmarks/vulkan_env.sh $O/vulkan-env-rows64.txt
  timeout -k 5 $left /tmp/ab/new --json --lengths 4096,16384 --head-dims 64,128 --group-sizes 1,2 --causal false \
    --burn-max-len 0 --budget-ms 300 --block-rows 64 > $O/new-rows64.jsonl 2> $O/new-rows64.log
  echo "rows64 rc=$? $(( $(date +%s) - start )) s" | tee -a $O/steps.txt
fi
