#!/usr/bin/env bash
# Issue 17: what a WGPU user gets on NVIDIA through Vulkan. One device call, one card: our
# kernels through Burn's wgpu backend compiled to WGSL and to SPIR-V (where f16 and bf16 take
# the cooperative-matrix kernel if the driver lists `cmma` for them), Burn's own `attention`
# on the same backend (`burn_attention` rows), our CUDA build (with the cooperative-matrix
# kernel on CUDA's `cmma` as the `cooperative` variant), and PyTorch's SDPA.
#
# Builds, here: `cargo build --release -p distr-bench` (WGSL), the same with `--features vulkan`
# (SPIR-V) and with `--no-default-features --features cuda`, each stripped and xz-compressed
# into .gpu/vulkan/distr-bench-{wgsl,spirv,cuda}.xz, with sdpa_baseline.py beside them; the
# GPU machine has no Vulkan loader, so the loaders' .debs go in .gl/ (libvulkan1 and GLVND's libglvnd0, libglx0, libegl1,
# libgl1, libgles2, libopengl0: with only the first three the loader found no driver on 2026-12-07; recipe in the device
# tool's README). Run from the repository root on the device machine, `.gl` and `.gpu/vulkan`
# carried, then unpack $OUT/raw.tar.gz here and `python3 benchmarks/vulkan_table.py raw`:
#   CALL_SECONDS=560 bash benchmarks/vulkan_gpu.sh
# BUILDS (default "wgsl spirv cuda") and DTYPES (default "f16 f32") pick the builds and dtypes,
# CAUSAL (default false; "false,true" for both) the timed masks.
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
source benchmarks/vulkan_env.sh "$R/vulkan-env.txt"

BUILDS=${BUILDS:-wgsl spirv cuda}
DTYPES=${DTYPES:-f16 f32}
for b in $BUILDS; do
  xz -dc ".gpu/vulkan/distr-bench-$b.xz" > "/tmp/distr-bench-$b" && chmod +x "/tmp/distr-bench-$b"
done
printf '[compilation]\ncache = "local"\n' > cubecl.toml

# Longest-valued lengths first, so that a step cut short by its cap still has them. Burn's
# `attention` autotunes each new shape (tens of seconds apiece on a fresh machine): it is timed
# on the wgpu builds up to 4096 tokens, and not on CUDA, where it is not the comparison.
GRID=(--json --lengths 4096,16384,1024,8192 --head-dims 64,128 --group-sizes 1,2 --causal "${CAUSAL:-false}"
      --budget-ms 300)
# The checks: the timed shapes' kernels (d = 64 and 128, G = 1 and 2, not causal) on small odd
# lengths (157 x 203), with the suite's representative (Mean; its keys-rising copies too), plus
# its one non-causal G = 2 case with the timed representative (Sample, strided groups). The
# suite has f32 cases only at d = 64 (G = 2 causal, G = 1 decode): those. SPIR-V in f16 checks
# the whole suite (the cooperative-matrix kernel wherever the driver has `cmma`), CUDA in f16
# the `cooperative` variant's cases.
CHECK_F16='203] d=64 G=1 l=128 causal=false F16 default Mean Lsh,203] d=128 G=1 l=128 causal=false F16 default Mean Lsh,203] d=64 G=2 l=128 causal=false F16 default Mean Lsh,203] d=128 G=2 l=128 causal=false F16 default Mean Lsh,203] d=64 G=2 l=128 causal=false F16 default Sample LshStrided'
CHECK_F32='F32 default'

# bench BINARY DTYPE CHECK_CAP GRID_CAP
bench() {
  local bin=$1 dtype=$2 check_cap=$3 grid_cap=$4 only
  [ "$dtype" = f16 ] && only=$CHECK_F16 || only=$CHECK_F32
  local filter=(--check-only "$only") variants=()
  if [ "$dtype" = f16 ] && [ "$bin" = spirv ]; then
    filter=()
  elif [ "$dtype" = f16 ] && [ "$bin" = cuda ]; then
    filter=(--check-only cooperative)
    variants=(--variants cooperative)
  fi
  local tag=$bin-$dtype
  # The loader names the drivers and physical devices it finds in the first wgpu check's log.
  local debug=()
  [ "$tag" = wgsl-f16 ] && debug=(env VK_LOADER_DEBUG=info,driver)
  if step "check $tag" "$check_cap" "${debug[@]}" "/tmp/distr-bench-$bin" --check "${filter[@]}" "${variants[@]}" \
      --lengths 256 --head-dims 64 --group-sizes 1 --causal false --burn-max-len 0 --budget-ms 20 --dtype "$dtype" \
      > "$R/check-$tag.out" 2> "$R/check-$tag.log"; then
    local burn=4096
    [ "$bin" = cuda ] && burn=0
    step "grid $tag" "$grid_cap" "/tmp/distr-bench-$bin" "${GRID[@]}" "${variants[@]}" --burn-max-len "$burn" --dtype "$dtype" \
      > "$R/grid-$tag.jsonl" 2> "$R/grid-$tag.log"
  else
    echo "grid $tag: not run, its check failed or timed out" | tee -a "$STEPS"
  fi
}

has() { [[ " $1 " == *" $2 "* ]]; }
if has "$DTYPES" f16; then
  has "$BUILDS" wgsl && bench wgsl f16 60 150
  has "$BUILDS" spirv && bench spirv f16 120 200
  has "$BUILDS" cuda && bench cuda f16 60 70
  PYTHONUNBUFFERED=1 step "sdpa f16" 30 python3 .gpu/vulkan/sdpa_baseline.py --n 1024,4096,8192,16384 --d 64,128 \
    > "$R/sdpa.jsonl" 2> "$R/sdpa.log"
fi
if has "$DTYPES" f32; then
  has "$BUILDS" wgsl && bench wgsl f32 30 60
  has "$BUILDS" spirv && bench spirv f32 30 60
  has "$BUILDS" cuda && bench cuda f32 20 40
fi

echo "total: $(($(date +%s) - START)) s" | tee -a "$STEPS"
grep -h "^check:" "$R"/check-*.log; wc -l "$R"/*.jsonl
cp cubecl.toml "$R/" 2>/dev/null
tar -C "$OUT" -czf "$OUT/raw.tar.gz" raw && rm -rf "$R"
ls -l "$OUT"
