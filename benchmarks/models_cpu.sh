#!/usr/bin/env bash
# Model-level speed on the CPU: our SmolLM2-135M on the CPU backends (Flex, the default, and
# NdArray) against Hugging Face transformers (PyTorch, SDPA attention) on the same cores, in one
# run, f32, batch 1, random weights of the model's shapes: prefill tokens/s of a CONTEXT-token
# prompt and decode tokens/s at the end of it.
#
#   DISTR_LLAMA=target/release/distr-llama PYTHON=python3 OUT=results/dir bash benchmarks/models_cpu.sh
#
# Needs a release build of distr-llama (`--features ndarray` for the NdArray rows) and a Python
# with torch and transformers (see ../shared/MODELS.md); the model's config.json and
# tokenizer.json come from `distr-llama export` of the GGUF that scripts/fetch-models.sh
# fetches. THREADS (default: all cores) is given to both sides (RAYON_NUM_THREADS,
# torch.set_num_threads). benchmarks/models_table.py --cpu turns the JSON lines under $OUT into
# the README's CPU table.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DISTR_LLAMA:-target/release/distr-llama}
python=${PYTHON:-python3}
out=${OUT:?set OUT to the results folder}
threads=${THREADS:-$(nproc)}
context=${CONTEXT:-1024}
backends=${BACKENDS:-flex ndarray}
mkdir -p "$out"
model=$(mktemp -d)
trap 'rm -rf "$model"' EXIT

bash scripts/fetch-models.sh
"$bin" export --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --out "$model/hf" >/dev/null
rm "$model/hf/model.safetensors"
lscpu | sed -n 's/^Model name: *//p' | head -1 | tee "$out/cpu.txt"
echo "threads $threads" | tee -a "$out/cpu.txt"

export RAYON_NUM_THREADS=$threads
: > "$out/llama.jsonl"
for backend in $backends; do
    "$bin" bench --backend "$backend" --random-weights --model "$model/hf" --context "$context" \
        --decode-tokens 16 --repeats 2 --json >> "$out/llama.jsonl" 2> "$out/llama-$backend.log"
done
"$python" benchmarks/hf_models.py --llama-config "$model/hf/config.json" --dtype float32 --device cpu \
    --threads "$threads" --context "$context" --sizes '' --repeats 6 > "$out/transformers.jsonl" 2> "$out/transformers.log"
cat "$out/llama.jsonl" "$out/transformers.jsonl"
