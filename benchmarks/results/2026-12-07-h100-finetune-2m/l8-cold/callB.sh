#!/usr/bin/env bash
# Call B, on the machine call A staged: join and check the GGUF, run RUNS for STEPS on a cold cache.
set -u
start=$(date +%s)
cat /tmp/ft/gguf.xz.part1 .gpu/ft2/part2 | xz -dc > /tmp/ft/model.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /tmp/ft/model.gguf" | sha256sum -c || exit 3
OUT=$OUT/long RUNS="${RUNS:-g2-gram-l8 g2-gram-l16}" STEPS=${STEPS:-1000} EVAL_EVERY=100 LIMIT_S=$(( ${CALL_S:-580} - ($(date +%s) - start) )) bash benchmarks/finetune_gpu.sh
echo "done at $(( $(date +%s) - start )) s"
