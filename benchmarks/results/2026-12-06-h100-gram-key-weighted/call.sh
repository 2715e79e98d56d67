#!/usr/bin/env bash
# One short device call: the key-weighted Gram grouping in the kernels' pre-pass checked against
# the reference on the device (every Gram case of --check), then G = 2 timed with LSH, Gram and
# key-weighted Gram groups (Mean) beside exact attention. Carry .gpu/kernel.
set -u
out=${OUT:-/tmp/out}
xz -dc .gpu/kernel/distr-bench.xz > /tmp/distr-bench && chmod +x /tmp/distr-bench || exit 2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
printf '[compilation]\ncache = "local"\n' > cubecl.toml
timeout 50 /tmp/distr-bench --check --check-only Gram --lengths 256 --head-dims 64 --group-sizes 1 --causal false \
    --burn-max-len 0 --budget-ms 20 > /dev/null 2> "$out/check.log"
echo "check exit $?"; grep -E "^check|FAILED|GramKeyWeighted" "$out/check.log"
timeout 80 /tmp/distr-bench --json --lengths 4096,16384 --head-dims 64,128 --group-sizes 1,2 --representatives mean \
    --groupings lsh,gram,gram-key-weighted --causal false --burn-max-len 0 --budget-ms 250 \
    > "$out/grid.jsonl" 2> "$out/grid.log"
echo "grid exit $?"; grep -E "ms " "$out/grid.log"
