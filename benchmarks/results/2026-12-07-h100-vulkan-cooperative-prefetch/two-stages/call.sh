#!/usr/bin/env bash
# Third call: two stages (new) against one stage with the register prefetch (base) on Vulkan,
# with the new build's whole --check first (ab_gpu.sh); the grouping pre-pass alone on the
# new build; Nsight Compute of the one-stage kernel on CUDA's cmma.
set -u
O=${OUT:?}
R=/tmp/r; mkdir -p $R
start=$(date +%s)
VULKAN=true BIN_DIR=.gpu/vulkan OUT=$R/ab LENGTHS=4096,16384,1024 CAUSAL=false,true GROUP_SIZES=1,2 \
  BURN_MAX_LEN=0 ROUNDS=2 timeout -k 5 330 bash benchmarks/ab_gpu.sh > $R/ab.txt 2>&1
echo "ab rc=$? $(( $(date +%s) - start )) s" | tee -a $R/steps.txt
tail -45 $R/ab.txt
source benchmarks/vulkan_env.sh $R/vulkan-env.txt > /dev/null
timeout -k 5 90 /tmp/ab/new --json --lengths 4096,16384 --head-dims 64,128 --group-sizes 2 --causal false \
  --grouping-alone --representatives sample,sampled-keys --burn-max-len 0 --budget-ms 300 --block-rows 128 \
  > $R/grouping.jsonl 2> $R/grouping.log
echo "grouping rc=$? $(( $(date +%s) - start )) s" | tee -a $R/steps.txt
grep "^|" $R/grouping.log
left=$(( 540 - ($(date +%s) - start) ))
if (( left > 60 )); then
  KERNELS=cooperative BENCH_XZ=.gpu/kernel/distr-bench.xz OUT=$R/ncu NCU_S=$(( left / 3 - 5 )) bash benchmarks/ncu_gpu.sh
  echo "ncu $(( $(date +%s) - start )) s" | tee -a $R/steps.txt
fi
tar -C /tmp -czf $O/r.tar.gz r
