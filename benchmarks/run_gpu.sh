#!/usr/bin/env bash
# One device call, everything on one card:
#   1. the kernel-vs-reference check (default grid, CHECK_VARIANTS (default VARIANTS) and TILINGS);
#   2. the stage ablations and the tiling sweep at one length (ABLATION_LENGTH): VARIANTS, the
#      grouping stages measured by their absence, the pre-pass alone, TILINGS;
#   3. the timing grid (LENGTHS x d = 64, 128 x G = 1, 2, 4, 8 x causal and not, plus Burn's
#      attention up to BURN_MAX_LEN);
#   4. PyTorch's SDPA anchors (FlashAttention-2, cuDNN, memory-efficient) on the same grid.
# Expects the stripped CUDA build xz-compressed as .gpu/kernel/distr-bench.xz and
# sdpa_baseline.py beside it (see README.md); writes everything under $OUT. Each step has a
# time limit so that the call ends inside the device's 10 minutes; STEPS (default
# check,ablation,grid,sdpa) picks the steps of this call. DistrAttention is timed with each of
# REPRESENTATIVES (default sample,sampled-keys; the first is named plainly, `distr_g2`) and
# each of GROUPINGS (default lsh; `GROUPINGS=lsh,gram REPRESENTATIVES=mean` adds the Gram
# grouping's pre-pass as `distr_g2:mean:gram`).
set -u
out=${OUT:-benchmarks/results/latest}
mkdir -p "$out" /tmp/bench
xz -dc .gpu/kernel/distr-bench.xz > /tmp/bench/distr-bench && chmod +x /tmp/bench/distr-bench || exit 2
bench=/tmp/bench/distr-bench
variants=${VARIANTS:-sync-scalar,sync-matrix-qk,sync-matrix}
tilings=()
[ -n "${TILINGS:-}" ] && tilings=(--tilings "$TILINGS")
lengths=${LENGTHS:-1024,4096,8192,16384}
representatives=${REPRESENTATIVES:-sample,sampled-keys}
groupings=${GROUPINGS:-lsh}
steps=",${STEPS:-check,ablation,grid,sdpa},"
step() { [[ "$steps" == *",$1,"* ]]; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn
# NVRTC takes seconds per kernel: keep compiled kernels between the runs below.
printf '[compilation]\ncache = "local"\n' > cubecl.toml
common=(--block-rows 128 --json)

# List flags append when repeated, so the check's (discarded) timing gets a tiny grid.
step check && { timeout "${CHECK_S:-300}" "$bench" --check --variants "${CHECK_VARIANTS:-$variants}" "${tilings[@]}" "${common[@]}" --burn-max-len 0 \
    --budget-ms 1 --lengths 256 --head-dims 64 --group-sizes 1 --causal false > /dev/null 2> "$out/check.log"
echo "check exit $?"; grep -E "FAILED|refused|panicked|^check:" "$out/check.log" | head -30; }

step ablation && { timeout "${ABLATION_S:-150}" "$bench" "${common[@]}" --burn-max-len 0 --budget-ms 200 \
    --lengths "${ABLATION_LENGTH:-8192}" --head-dims 64,128 --group-sizes 1,2 --causal "${ABLATION_CAUSAL:-false,true}" \
    --variants "$variants,per-call-hyperplanes,identity-permutation,hash-only,no-key-fusion" \
    --representatives "$representatives" --groupings "$groupings" "${tilings[@]}" --grouping-alone > "$out/ablation.jsonl" 2> "$out/ablation.log"
echo "ablation exit $?"; }

step grid && { timeout "${GRID_S:-180}" "$bench" "${common[@]}" --burn-max-len "${BURN_MAX_LEN:-0}" --budget-ms 300 \
    --lengths "$lengths" --head-dims 64,128 --group-sizes 1,2,4,8 --causal false,true \
    --representatives "$representatives" --groupings "$groupings" > "$out/distr_bench.jsonl" 2> "$out/distr_bench.log"
echo "grid exit $?"; }

step sdpa && for causal in "" "--causal"; do
    timeout "${SDPA_S:-45}" python3 .gpu/kernel/sdpa_baseline.py --n "$lengths" --d 64,128 $causal >> "$out/sdpa.jsonl" 2>> "$out/sdpa.log"
done
python3 benchmarks/table.py "$out"
