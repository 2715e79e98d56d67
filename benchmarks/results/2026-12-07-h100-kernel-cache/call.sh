#!/usr/bin/env bash
# One call: the kernel cache on CUDA. The same 4-step fine-tune of SmolLM2-135M's shapes
# (random weights, f32, 8 x 256 tokens per step, held-out evaluation before, at step 2 and
# after) twice, in two processes, with `--kernel-cache`: the first on an empty cache, the
# second on what the first left.
set -u
start=$(date +%s)
mkdir -p /tmp/ft/shape
xz -dc .gpu/kc/distr-llama.xz > /tmp/ft/distr-llama && chmod +x /tmp/ft/distr-llama
tar -xJf .gpu/kc/corpus.tar.xz -C /tmp/ft
cp .gpu/kc/config.json /tmp/ft/shape/ && xz -dc .gpu/kc/tokenizer.json.xz > /tmp/ft/shape/tokenizer.json
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/card.txt"
python3 .gpu/kc/random_weights.py /tmp/ft/shape /tmp/ft/random > "$OUT/random_weights.log" 2>&1; echo "random weights $? at $(( $(date +%s) - start )) s"
for pass in empty filled; do
    s=$(date +%s)
    OUT=$OUT/$pass MODEL=/tmp/ft/random STEPS=4 EVAL_EVERY=2 LOG_EVERY=1 RUNS=exact LIMIT_S=$(( ${CALL_S:-470} - 15 - ($(date +%s) - start) )) bash benchmarks/finetune_gpu.sh
    echo "$pass cache: $(( $(date +%s) - s )) s"
done
ls -R /tmp/ft/kernel-cache | head -20; du -sh /tmp/ft/kernel-cache /tmp/ft/nv-cache
