#!/usr/bin/env bash
# A/B of two builds of distr-llama on the lent GPU in one call: SmolLM2-135M (bf16, random
# weights, batch 1) prefill and decode at CONTEXT (2048,8192 by default), exact and G = 2, the
# two builds in ROUNDS alternating rounds, then transformers' prefill on the same card for the
# ratio. A fresh machine compiles each build's kernels in its first run: RUN_S (240 s) allows for
# that. Expects .gpu/models/distr-llama.xz (new), .gpu/models/distr-llama-base.xz (base) and
# .gpu/models/smollm2/ as models_gpu.sh does; writes ab.jsonl and the logs under $OUT.
set -u
out=${OUT:-benchmarks/results/latest}
context=${CONTEXT:-2048,8192}
mkdir -p "$out" /tmp/ab
for build in new base; do
    name=distr-llama; [ "$build" = base ] && name=distr-llama-base
    xz -dc ".gpu/models/$name.xz" > "/tmp/ab/$build" && chmod +x "/tmp/ab/$build" || exit 2
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
# No kernel cache: CubeCL keys it by the kernel's id, not by the build that compiled it.
rm -f cubecl.toml CubeCL.toml
for round in $(seq "${ROUNDS:-2}"); do
    for build in base new; do
        timeout "${RUN_S:-240}" "/tmp/ab/$build" bench --backend cuda --dtype bf16 --random-weights \
            --model .gpu/models/smollm2 --context "$context" --decode-tokens 8 --repeats 3 \
            --attention distr --group-size 2 --json 2>> "$out/$build.log" \
            | sed "s/^{/{\"build\":\"$build\",\"round\":$round,/" >> "$out/ab.jsonl"
        echo "round $round $build exit $?"
    done
done
timeout "${HF_S:-120}" python3 benchmarks/hf_models.py --llama-config .gpu/models/smollm2/config.json --dtype bfloat16 \
    --sizes "" --context "$context" --no-decode > "$out/transformers.jsonl" 2> "$out/transformers.log"
echo "transformers exit $?"
python3 - "$out/ab.jsonl" "$out/transformers.jsonl" <<'PY'
import json, sys
from collections import defaultdict
best = defaultdict(float)
for line in open(sys.argv[1]):
    r = json.loads(line)
    key = (r["context"], r["attention"], r["build"])
    best[key] = max(best[key], r["prefill_tokens_per_second"])
theirs = {r["tokens"]: r["tokens_per_s"] for r in map(json.loads, open(sys.argv[2])) if r.get("phase") == "prefill"}
nan = float("nan")
print("| context | attention | base tokens/s | new tokens/s | new / base | transformers | new / transformers |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for context, attention in sorted({(c, a) for c, a, _ in best}):
    # A build whose run timed out has no line: nan, not a division by zero.
    base, new = best.get((context, attention, "base"), nan), best.get((context, attention, "new"), nan)
    hf = theirs.get(context, nan)
    print(f"| {context} | {attention} | {base:.0f} | {new:.0f} | {new / base:.3f} | {hf:.0f} | {new / hf:.2f} |")
PY
