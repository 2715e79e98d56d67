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
# README.md); writes everything under $OUT. BIN_DIR names another folder of the two builds (the
# baseline script stays in .gpu/kernel/); VULKAN=true runs wgpu builds on the card's Vulkan
# driver (`.gl/` carried, see vulkan_gpu.sh); BURN_MAX_LEN (default 0) times Burn's `attention`
# up to that length; BLOCK_ROWS (default 128) the query rows per block. BUILDS (default "base
# new") times more builds in the same rounds, each against base: a build named x comes from
# distr-bench-x.xz (new from distr-bench.xz), and only new is checked.
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
bin_dir=${BIN_DIR:-.gpu/kernel}
mkdir -p "$out" /tmp/ab
[ "${VULKAN:-false}" = true ] && source benchmarks/vulkan_env.sh "$out/vulkan-env.txt"
# CubeCL's PTX cache is keyed by the kernel's id, not by the build that compiled it: with a cache
# configured (run_gpu.sh writes one), one build would run the other's kernels.
rm -f cubecl.toml CubeCL.toml
builds=${BUILDS:-base new}
for build in $builds; do
    name=distr-bench; [ "$build" = new ] || name=distr-bench-$build
    xz -dc "$bin_dir/$name.xz" > "/tmp/ab/$build" && chmod +x "/tmp/ab/$build" || exit 2
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn CUBECL_AUTOTUNE_LEVEL=minimal
common=(--block-rows "${BLOCK_ROWS:-128}" --burn-max-len "${BURN_MAX_LEN:-0}" --budget-ms 300 --json)
grid=("${common[@]}" "${mode[@]}" --lengths "$lengths" --head-dims 64,128 --group-sizes "$groups" --causal "$causal"
    --representatives "$representatives")
# List flags append when repeated, so the check's (discarded) timing gets its own small grid.
# shellcheck disable=SC2086
/tmp/ab/new --check $check_flags "${common[@]}" "${mode[@]}" --lengths 1024 --head-dims 64 --group-sizes 1 \
    --causal false > /dev/null 2> "$out/check.log"
echo "check exit $?"; grep -E "FAILED|refused|panicked|^check:" "$out/check.log" | head -40
for round in $(seq "$rounds"); do
    for build in $builds; do
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
others = sorted({build for _, build in times} - {"base"}, key=lambda build: (build != "new", build))
ratios = defaultdict(list)
print("N d causal method | base ms |", " | ".join(f"{b} ms | {b}/base" for b in others),
      "| FA2 ms | FA2/new (best of the rounds)")
for key in sorted({k for k, _ in times}):
    base = times.get((key, "base"))
    if not base:
        continue
    cells = []
    for build in others:
        ms = times.get((key, build))
        if ms:
            ratios[build].append(min(ms) / min(base))
            cells.append(f"{min(ms):.3f} | {min(ms) / min(base):.3f}")
        else:
            cells.append("- | -")
    fa2, new = flash.get((*key[:3], timed_pass(key[3]))), times.get((key, "new"))
    fa2_text = f"{fa2:.3f} | {fa2 / min(new):.2f}" if fa2 and new else "- | -"
    print(*key, "|", f"{min(base):.3f} |", " | ".join(cells), "|", fa2_text)
for build in others:
    if ratios[build]:
        print(f"geometric mean {build}/base {statistics.geometric_mean(ratios[build]):.3f} over {len(ratios[build])}")
PY
