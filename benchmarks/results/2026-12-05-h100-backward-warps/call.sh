#!/usr/bin/env bash
# One call: the tensor-core backward with 8 warps (128-row blocks) on the query side, the key
# side or both, against main's 4 warps: each variant's check on two exact cases, then every
# build's backward grid in turn (exact), all lines tagged with the build.
set -u
out=${OUT:?}
mkdir -p /tmp/bench
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
export RUST_LOG=warn
printf '[compilation]\ncache = "local"\n' > cubecl.toml
builds="base var-8-4 var-4-8 var-8-8"
for b in $builds; do xz -dc .gpu/$b/distr-bench.xz > /tmp/bench/$b && chmod +x /tmp/bench/$b || exit 2; done
for b in var-8-4 var-4-8 var-8-8; do
    echo "== $b" >> "$out/check.log"
    timeout ${CHECK_S:-45} /tmp/bench/$b --backward --check --check-only "d=64 G=1 l=128 causal=true F16,d=128 G=1 l=128 causal=false F16" \
        --block-rows 128 --burn-max-len 0 --reference-max-len 0 --budget-ms 1 --lengths 256 --head-dims 64 --group-sizes 1 --causal false > /dev/null 2>> "$out/check.log"
    echo "check $b exit $?"
done
grep -E "^check|^==" "$out/check.log" | cut -c1-150
for b in $builds; do
    echo "== $b" >> "$out/grid.log"
    timeout ${GRID_S:-70} /tmp/bench/$b --backward --json --block-rows 128 --budget-ms 100 --reference-max-len 0 \
        --lengths 1024,4096,16384 --head-dims 64,128 --group-sizes 1 --causal false,true 2>> "$out/grid.log" | sed "s/^{/{\"build\":\"$b\",/" >> "$out/grid.jsonl"
    echo "grid $b exit ${PIPESTATUS[0]}"
done
