#!/usr/bin/env bash
# Where SmolLM2-135M's prefill spends its device time on the lent GPU (issue 13), ours against
# Hugging Face transformers (SDPA) on the same card: each model's prefill of CONTEXT tokens
# (8192 by default, bf16, random weights) timed once normally, then run again under Nsight
# Compute, which records every kernel's duration (`gpu__time_duration.sum`, one metric, no
# replay of sections). prefill_kernels.py reads each log in launch order and prints the device
# time per layer by kernel name (the layers between a pass's first and last attention launch).
# Our run has filled CubeCL's autotune and kernel caches before the profiled one, so that the
# profile holds no tuning or compilation. Expects .gpu/models/distr-llama.xz and
# .gpu/models/smollm2/ as models_gpu.sh does; THEIRS=false skips transformers. Writes everything
# under $OUT.
set -u
out=${OUT:-benchmarks/results/latest}
context=${CONTEXT:-8192}
mkdir -p "$out" /tmp/models
xz -dc .gpu/models/distr-llama.xz > /tmp/models/distr-llama && chmod +x /tmp/models/distr-llama || exit 2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
printf '[compilation]\ncache = "local"\n[autotune]\ncache = "local"\n' > cubecl.toml
ours=(/tmp/models/distr-llama bench --backend cuda --dtype bf16 --random-weights --model .gpu/models/smollm2
    --context "$context" --decode-tokens 1 --repeats 1 --attention distr --group-size 2 --json)
theirs=(python3 benchmarks/hf_models.py --llama-config .gpu/models/smollm2/config.json --dtype bfloat16 --sizes ""
    --context "$context" --repeats 1 --no-decode)
ncu_all=(ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv --print-units base)
timeout "${OURS_S:-150}" "${ours[@]}" > "$out/ours.jsonl" 2> "$out/ours.log"
echo "ours exit $?"; cat "$out/ours.jsonl"
timeout "${NCU_S:-240}" "${ncu_all[@]}" --log-file "$out/ncu-ours.csv" "${ours[@]}" > /dev/null 2> "$out/ncu-ours.log"
echo "ncu ours exit $?"
if [ "${THEIRS:-true}" = true ]; then
    timeout "${HF_S:-120}" "${theirs[@]}" > "$out/transformers.jsonl" 2> "$out/transformers.log"
    echo "transformers exit $?"; cat "$out/transformers.jsonl"
    timeout "${NCU_S:-240}" "${ncu_all[@]}" --log-file "$out/ncu-transformers.csv" "${theirs[@]}" > /dev/null 2> "$out/ncu-transformers.log"
    echo "ncu transformers exit $?"
fi
rm -f cubecl.toml
# Our bench runs exact (passes 1, 2) then G = 2 (passes 3, 4): the timed pass of each.
python3 benchmarks/prefill_kernels.py "$out/ncu-ours.csv" --attention tensor_core_forward --layers 30 --pass 2 \
    --label "ours exact" | tee "$out/kernels-ours-exact.md"
python3 benchmarks/prefill_kernels.py "$out/ncu-ours.csv" --attention tensor_core_forward --layers 30 --pass 4 \
    --label "ours G=2" | tee "$out/kernels-ours-g2.md"
[ "${THEIRS:-true}" = true ] && python3 benchmarks/prefill_kernels.py "$out/ncu-transformers.csv" \
    --attention 'flash|fmha|sdpa' --layers 30 --label transformers | tee "$out/kernels-transformers.md"
