#!/usr/bin/env bash
# One device call: the kernel-vs-reference check, the timing grid and PyTorch's SDPA anchors
# on the same card. Expects the stripped CUDA binary (or BENCH_BIN naming it) and
# sdpa_baseline.py in .gpu/kernel/ (see benchmarks/README.md); writes everything under $OUT.
# Arguments go to distr-bench.
set -u
out=${OUT:-benchmarks/results/latest}
bin=.gpu/kernel
bench=${BENCH_BIN:-$bin/distr-bench}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn
# --check exits non-zero on a mismatch before timing; then time anyway so the numbers come
# back next to the failure list.
"$bench" --check --json "$@" > "$out/distr_bench.jsonl" 2> "$out/distr_bench.log" \
  || "$bench" --json "$@" >> "$out/distr_bench.jsonl" 2>> "$out/distr_bench.log"
for causal in "" "--causal"; do
  python3 $bin/sdpa_baseline.py --n 1024,4096,8192,16384 --d 64,128 $causal >> "$out/sdpa.jsonl" 2>> "$out/sdpa.log"
done
grep "^check" "$out/distr_bench.log" | tail -n 12
tail -n 18 "$out/distr_bench.log"
python3 - "$out/sdpa.jsonl" <<'PY'
import sys, json
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["impl"], r["n"], r["d"], r["causal"], r.get("ms"), r.get("tflops"), r.get("error", ""))
PY
