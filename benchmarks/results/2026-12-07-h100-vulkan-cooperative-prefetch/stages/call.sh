#!/usr/bin/env bash
# Fifth call: stage ablations of version 1 on Vulkan (each build removes one stage: noreads =
# the lanes do not read the scores, noqk = no score product, nopv = no P V product; timing only),
# against version 1 (base and new are both version 1: one copy travels).
set -u
O=${OUT:?}
R=/tmp/r; mkdir -p $R
start=$(date +%s)
cp .gpu/vulkan/distr-bench-base.xz .gpu/vulkan/distr-bench.xz
VULKAN=true BIN_DIR=.gpu/vulkan OUT=$R/ab BUILDS="base new noreads noqk nopv" LENGTHS=4096,16384 CAUSAL=false \
  GROUP_SIZES=1 BURN_MAX_LEN=0 ROUNDS=2 CHECK_FLAGS="--check-only rising" \
  timeout -k 5 300 bash benchmarks/ab_gpu.sh > $R/ab.txt 2>&1
echo "ab rc=$? $(( $(date +%s) - start )) s" | tee -a $R/steps.txt
tail -12 $R/ab.txt
tar -C /tmp -czf $O/r.tar.gz r
