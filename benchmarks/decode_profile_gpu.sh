#!/usr/bin/env bash
# Where a SmolLM2-135M decode step's time goes on the lent GPU (issue 13, part 3): the step's
# time (`distr-llama bench`, bf16, random weights, 512 and 8192 tokens of context, exact and
# G = 2), and the kernels it launches, logged by CubeCL's profiler at its "minimal" level (each
# execution by name, no timing, no synchronisation) in two runs that differ only in the number
# of decode steps (1 and 33), so that their difference is what 32 steps launch, warm-up,
# compilation and autotuning aside. kernel_counts.py turns the two logs into kernels per step
# by name. Expects .gpu/models/distr-llama.xz and .gpu/models/smollm2/ as models_gpu.sh does.
set -u
out=${OUT:-benchmarks/results/latest}
mkdir -p "$out" /tmp/models
xz -dc .gpu/models/distr-llama.xz > /tmp/models/distr-llama && chmod +x /tmp/models/distr-llama || exit 2
llama=/tmp/models/distr-llama
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
common=(bench --backend cuda --dtype bf16 --random-weights --model .gpu/models/smollm2 --repeats 1
    --attention distr --group-size 2 --json)
printf '[compilation]\ncache = "local"\n' > cubecl.toml
timeout "${STEPS_S:-150}" "$llama" "${common[@]}" --context 512,8192 --decode-tokens 32 > "$out/steps.jsonl" 2> "$out/steps.log"
echo "steps exit $?"; cat "$out/steps.jsonl"
for tokens in 1 33; do
    printf '[compilation]\ncache = "local"\n[profiling.logger]\nlevel = "minimal"\nfile = "%s"\n' "$out/kernels-$tokens.log" > cubecl.toml
    timeout "${PROFILE_S:-90}" "$llama" "${common[@]}" --context 512 --decode-tokens "$tokens" > "$out/profiled-$tokens.jsonl" 2>> "$out/profile.log"
    echo "profiled run, $tokens decode tokens: exit $?, $(wc -l < "$out/kernels-$tokens.log") log lines"
done
rm -f cubecl.toml
