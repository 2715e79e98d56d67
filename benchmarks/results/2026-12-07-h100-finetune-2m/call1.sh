#!/usr/bin/env bash
# Call 1: stage the binary, corpus and the GGUF's first part in /tmp/ft; fill the kernel cache
# with 4-step runs of both settings on random weights of the same shapes (cold), and note the
# step time for call 2.
set -u
start=$(date +%s)
mkdir -p /tmp/ft && cp .gpu/ft/part1 /tmp/ft/gguf.xz.part1
xz -dc .gpu/ft/distr-llama.xz > /tmp/ft/distr-llama && chmod +x /tmp/ft/distr-llama
tar -xJf .gpu/ft/corpus.tar.xz -C /tmp/ft
mkdir -p /tmp/ft/shape && cp .gpu/ft/config.json /tmp/ft/shape/ && xz -dc .gpu/ft/tokenizer.json.xz > /tmp/ft/shape/tokenizer.json
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/card.txt"
python3 .gpu/ft/random_weights.py /tmp/ft/shape /tmp/ft/random > "$OUT/random_weights.log" 2>&1; echo "random weights $? at $(( $(date +%s) - start )) s"
printf '[autotune.logger]\nlevel = "minimal"\nfile = "/tmp/ft/autotune.log"\n' > cubecl.toml
OUT=$OUT/cold MODEL=/tmp/ft/random STEPS=4 EVAL_EVERY=2 LOG_EVERY=1 RUNS="exact g2-gram" LIMIT_S=${COLD_S:-400} bash benchmarks/finetune_gpu.sh
echo "cold runs done at $(( $(date +%s) - start )) s"
# The slower run's last step, both running: what call 2 sizes its runs by.
grep -h "step 4/4" "$OUT"/cold/*.log | sed -E 's/.*\(([0-9.]+) s\)$/\1/' | sort -g | tail -1 | tee /tmp/ft/step_seconds
cp /tmp/ft/autotune.log "$OUT/" 2>/dev/null
