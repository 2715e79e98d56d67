#!/usr/bin/env bash
# Fourth call: ablations of the cooperative-matrix kernel's version 1 on Vulkan, four builds in
# alternating rounds: base = the kernel before version 1, new = version 1 (prefetch, scores read
# once, rotated lanes; checked first), reread = version 1 reading the scores twice, norot = version 1 without the rotation.
set -u
O=${OUT:?}
R=/tmp/r; mkdir -p $R
start=$(date +%s)
VULKAN=true BIN_DIR=.gpu/vulkan OUT=$R/ab BUILDS="base new reread norot" LENGTHS=4096,16384 CAUSAL=false \
  GROUP_SIZES=1,2 BURN_MAX_LEN=0 ROUNDS=2 timeout -k 5 500 bash benchmarks/ab_gpu.sh > $R/ab.txt 2>&1
echo "ab rc=$? $(( $(date +%s) - start )) s" | tee -a $R/steps.txt
tail -25 $R/ab.txt
tar -C /tmp -czf $O/r.tar.gz r
