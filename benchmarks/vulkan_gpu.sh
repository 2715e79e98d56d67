#!/usr/bin/env bash
# Issue 17 item 1: what a WGPU user gets on NVIDIA through Vulkan. One device call, one card:
# our kernels through Burn's wgpu backend compiled to WGSL and to SPIR-V, Burn's own
# `attention` on the same backend (`burn_attention` rows), our CUDA build, and PyTorch's SDPA.
#
# Builds, here: `cargo build --release -p distr-bench` (WGSL), the same with `--features vulkan`
# (SPIR-V) and with `--no-default-features --features cuda`, each stripped and xz-compressed
# into .gpu/vulkan/distr-bench-{wgsl,spirv,cuda}.xz, with sdpa_baseline.py beside them; the
# GPU machine has no Vulkan loader, so the loaders' .debs go in .gl/ (libvulkan1, and libglvnd0 and libglx0, which NVIDIA's driver, libGLX_nvidia, loads; recipe in the device
# tool's README). Run from the repository root on the device machine, `.gl` and `.gpu/vulkan`
# carried, then unpack $OUT/raw.tar.gz here and `python3 benchmarks/vulkan_table.py raw`:
#   CALL_SECONDS=560 bash benchmarks/vulkan_gpu.sh
# Every step runs under `timeout`, capped by what is left of CALL_SECONDS (default 560), so
# the call ends in time and what ran comes back; steps run most valuable first.
set -u
START=$(date +%s)
DEADLINE=$((START + ${CALL_SECONDS:-560}))
OUT=${OUT:-/tmp/out}
R=$OUT/raw
mkdir -p "$R"
STEPS=$R/steps.txt
exec 3>&1 # the call's stdout, for step lines from inside redirected steps

left() { echo $((DEADLINE - $(date +%s))); }

# step NAME CAP_SECONDS COMMAND...: runs COMMAND under timeout (CAP, or what is left less a
# reserve for packing), logs rc and seconds to steps.txt, returns COMMAND's rc.
step() {
  local name=$1 cap=$2
  shift 2
  local avail=$(($(left) - 20))
  ((avail < cap)) && cap=$avail
  if ((cap < 15)); then
    echo "$name: skipped, $(left) s left" | tee -a "$STEPS" >&3
    return 124
  fi
  local t0=$(date +%s)
  timeout -k 5 "$cap" "$@"
  local rc=$?
  echo "$name: rc=$rc, $(($(date +%s) - t0)) s (cap $cap s)" | tee -a "$STEPS" >&3
  return $rc
}

# --- machine, card, Vulkan loader and driver -----------------------------------------------
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/card.txt" 2>&1
cat "$OUT/card.txt"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
{
  echo "## ldconfig -p | grep libvulkan"; ldconfig -p | grep libvulkan
  echo "## ICD manifests"
  for d in /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
    [ -d "$d" ] && { echo "# $d"; ls -l "$d"; for j in "$d"/*.json; do [ -f "$j" ] && { echo "# $j"; cat "$j"; }; done; }
  done
  echo "## nvidia-smi"; nvidia-smi
} > "$R/vulkan-env.txt" 2>&1
# The NVIDIA ICD manifest lies outside the loader's default search paths: name it.
NV_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$NV_ICD" ] && export VK_DRIVER_FILES=$NV_ICD
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}" | tee -a "$R/vulkan-env.txt"

for b in wgsl spirv cuda; do
  xz -dc ".gpu/vulkan/distr-bench-$b.xz" > "/tmp/distr-bench-$b" && chmod +x "/tmp/distr-bench-$b"
done
printf '[compilation]\ncache = "local"\n' > cubecl.toml

# Longest-valued lengths first, so that a step cut short by its cap still has them. Burn's
# `attention` autotunes each new shape (tens of seconds apiece on a fresh machine): it is timed
# on the wgpu builds up to 4096 tokens, and not on CUDA, where it is not the comparison.
GRID=(--json --lengths 4096,16384,1024,8192 --head-dims 64,128 --group-sizes 1,2 --causal false
      --budget-ms 300)
# The checks: the timed shapes' kernels (d = 64 and 128, G = 1 and 2, not causal) on small odd
# lengths (157 x 203), with the suite's representative (Mean; its keys-rising copies too), plus
# its one non-causal G = 2 case with the timed representative (Sample, strided groups). The
# suite has f32 cases only at d = 64 (G = 2 causal, G = 1 decode): those.
CHECK_F16='203] d=64 G=1 l=128 causal=false F16 default Mean Lsh,203] d=128 G=1 l=128 causal=false F16 default Mean Lsh,203] d=64 G=2 l=128 causal=false F16 default Mean Lsh,203] d=128 G=2 l=128 causal=false F16 default Mean Lsh,203] d=64 G=2 l=128 causal=false F16 default Sample LshStrided'
CHECK_F32='F32 default'

# bench BINARY DTYPE CHECK_CAP GRID_CAP
bench() {
  local bin=$1 dtype=$2 check_cap=$3 grid_cap=$4 only
  [ "$dtype" = f16 ] && only=$CHECK_F16 || only=$CHECK_F32
  local tag=$bin-$dtype
  # The loader names the drivers and physical devices it finds in the first wgpu check's log.
  local debug=()
  [ "$tag" = wgsl-f16 ] && debug=(env VK_LOADER_DEBUG=info,driver)
  if step "check $tag" "$check_cap" "${debug[@]}" "/tmp/distr-bench-$bin" --check --check-only "$only" \
      --lengths 256 --head-dims 64 --group-sizes 1 --causal false --burn-max-len 0 --budget-ms 20 --dtype "$dtype" \
      > "$R/check-$tag.out" 2> "$R/check-$tag.log"; then
    local burn=4096
    [ "$bin" = cuda ] && burn=0
    step "grid $tag" "$grid_cap" "/tmp/distr-bench-$bin" "${GRID[@]}" --burn-max-len "$burn" --dtype "$dtype" \
      > "$R/grid-$tag.jsonl" 2> "$R/grid-$tag.log"
  else
    echo "grid $tag: not run, its check failed or timed out" | tee -a "$STEPS"
  fi
}

bench wgsl f16 60 150
bench spirv f16 60 130
bench cuda f16 45 50
PYTHONUNBUFFERED=1 step "sdpa f16" 30 python3 .gpu/vulkan/sdpa_baseline.py --n 1024,4096,8192,16384 --d 64,128 \
  > "$R/sdpa.jsonl" 2> "$R/sdpa.log"
bench wgsl f32 30 60
bench spirv f32 30 60
bench cuda f32 20 40

echo "total: $(($(date +%s) - START)) s" | tee -a "$STEPS"
grep -h "^check:" "$R"/check-*.log; wc -l "$R"/*.jsonl
cp cubecl.toml "$R/" 2>/dev/null
tar -C "$OUT" -czf "$OUT/raw.tar.gz" raw && rm -rf "$R"
ls -l "$OUT"
