#!/usr/bin/env bash
# A/B comparison of two builds of distr-bench in one device call: the new build's on-device
# check (CHECK_FLAGS: the variants and tilings to check besides the default grid), then both
# builds timed in alternating rounds on the same card (ROUNDS rounds, B = 4, H = 16, l = 128,
# fp16, LENGTHS x d = 64 and 128 x GROUP_SIZES x REPRESENTATIVES, CAUSAL: false,true), PyTorch's
# SDPA on the same grid, and the per-configuration ratio of the medians. For changes that must not move performance
# (refactors) or should (kernel changes). BACKWARD=true compares the training methods instead
# (`--check --backward`, `--backward` timings, group size 1 unless GROUP_SIZES says otherwise,
# PyTorch's backward from sdpa_backward.py). Expects both stripped CUDA builds, xz-compressed,
# and sdpa_baseline.py in .gpu/kernel/ (distr-bench.xz = new, distr-bench-base.xz = base; see
# README.md); writes everything under $OUT.
set -u
out=${OUT:-benchmarks/results/latest}
check_flags=${CHECK_FLAGS:-}
rounds=${ROUNDS:-2}
lengths=${LENGTHS:-4096,8192}
backward=${BACKWARD:-false}
causal=${CAUSAL:-false,true}
mode=()
[ "$backward" = true ] && mode=(--backward --reference-max-len 0)
groups=${GROUP_SIZES:-$([ "$backward" = true ] && echo 1 || echo 1,2,4)}
representatives=${REPRESENTATIVES:-sample}
mkdir -p "$out" /tmp/ab
# CubeCL's PTX cache is keyed by the kernel's id, not by the build that compiled it: with a cache
# configured (run_gpu.sh writes one), one build would run the other's kernels.
rm -f cubecl.toml CubeCL.toml
for build in new base; do
    name=distr-bench; [ "$build" = base ] && name=distr-bench-base
    xz -dc ".gpu/kernel/$name.xz" > "/tmp/ab/$build" && chmod +x "/tmp/ab/$build" || exit 2
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn CUBECL_AUTOTUNE_LEVEL=minimal
common=(--block-rows 128 --burn-max-len 0 --budget-ms 300 --json)
grid=("${common[@]}" "${mode[@]}" --lengths "$lengths" --head-dims 64,128 --group-sizes "$groups" --causal "$causal"
    --representatives "$representatives")
# List flags append when repeated, so the check's (discarded) timing gets its own small grid.
# shellcheck disable=SC2086
/tmp/ab/new --check $check_flags "${common[@]}" "${mode[@]}" --lengths 1024 --head-dims 64 --group-sizes 1 \
    --causal false > /dev/null 2> "$out/check.log"
echo "check exit $?"; grep -E "FAILED|refused|panicked|^check:" "$out/check.log" | head -40
for round in $(seq "$rounds"); do
    for build in base new; do
        /tmp/ab/$build "${grid[@]}" 2>> "$out/$build.log" \
            | sed "s/^{/{\"build\":\"$build\",\"round\":$round,/" >> "$out/ab.jsonl"
    done
done
baseline=.gpu/kernel/sdpa_baseline.py
[ "$backward" = true ] && baseline=benchmarks/sdpa_backward.py
for setting in ${causal//,/ }; do
    flag=(); [ "$setting" = true ] && flag=(--causal)
    python3 "$baseline" --n "$lengths" --d 64,128 "${flag[@]}" >> "$out/sdpa.jsonl" 2>> "$out/sdpa.log"
done
python3 - "$out/ab.jsonl" "$out/sdpa.jsonl" <<'PY'
import json, statistics, sys
from collections import defaultdict
times = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("median_ms") is None:
        continue
    key = (r["seq"], r["head_dim"], r["causal"], r["method"])
    times[key, r["build"]].append(r["median_ms"])
# The pass a method times: the forward, or (`--backward`) `...:backward` and `...:train`, which
# sdpa_backward.py's rows of the same "pass" match.
def timed_pass(method):
    suffix = method.rpartition(":")[2]
    return suffix if suffix in ("backward", "train") else "forward"
flash = {}
for line in open(sys.argv[2]):
    r = json.loads(line)
    if r.get("impl") == "torch-flash2" and r.get("ms"):
        flash[r["n"], r["d"], r["causal"], r.get("pass", "forward")] = r["ms"]
ratios = []
print("N d causal method | base ms | new ms | new/base | FA2 ms | FA2/new (best of the rounds)")
for key in sorted({k for k, _ in times}):
    base, new = times.get((key, "base")), times.get((key, "new"))
    fa2 = flash.get((*key[:3], timed_pass(key[3])))
    if base and new:
        ratio = min(new) / min(base)
        ratios.append(ratio)
        fa2_text = f"{fa2:.3f} | {fa2 / min(new):.2f}" if fa2 else "- | -"
        print(*key, "|", f"{min(base):.3f} | {min(new):.3f} | {ratio:.3f} | {fa2_text}")
if ratios:
    print(f"geometric mean new/base {statistics.geometric_mean(ratios):.3f} over {len(ratios)}")
PY
