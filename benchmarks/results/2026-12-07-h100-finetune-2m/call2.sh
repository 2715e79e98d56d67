#!/usr/bin/env bash
# Call 2, on the machine call 1 warmed: join the GGUF, check it, run the long fine-tunes.
set -u
start=$(date +%s)
cat /tmp/ft/gguf.xz.part1 .gpu/ft2/part2 | xz -dc > /tmp/ft/model.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /tmp/ft/model.gguf" | sha256sum -c || exit 3
printf '[autotune.logger]\nlevel = "minimal"\nfile = "/tmp/ft/autotune-long.log"\n' > cubecl.toml
# Steps: 1000 (2,048,000 tokens) unless the step time call 1 measured says they do not fit in
# TRAIN_S seconds; both runs get the same number.
per_step=$(cat /tmp/ft/step_seconds 2>/dev/null); per_step=${per_step:-0.3}
steps=$(python3 -c "print(max(10, min(1000, int(${TRAIN_S:-300} / (1.2 * $per_step)))))")
echo "step ${per_step} s -> ${steps} steps"
OUT=$OUT/long RUNS="exact g2-gram" STEPS=$steps EVAL_EVERY=$(( steps / 10 )) LIMIT_S=$(( ${CALL_S:-500} - 10 - ($(date +%s) - start) )) bash benchmarks/finetune_gpu.sh
echo "done at $(( $(date +%s) - start )) s"
cp /tmp/ft/autotune-long.log "$OUT/" 2>/dev/null
