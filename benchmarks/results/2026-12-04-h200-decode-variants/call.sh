#!/usr/bin/env bash
# Split-key decode with 8 cubes per SM (new) against main (base): check, then decode
# steps in alternating rounds, PyTorch once, Nsight Compute of the decode kernel.
set -u
res=/tmp/res; mkdir -p $res /tmp/ab
for b in new base; do n=distr-bench; [ $b = base ] && n=distr-bench-base; xz -dc .gpu/kernel/$n.xz > /tmp/ab/$b; chmod +x /tmp/ab/$b; done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $res/card.txt
export RUST_LOG=warn CUBECL_AUTOTUNE_LEVEL=minimal
rm -f cubecl.toml
timeout 240 /tmp/ab/new --check --json --burn-max-len 0 --budget-ms 1 --lengths 256 --head-dims 64 --group-sizes 1 --causal false > /dev/null 2> $res/check.log
echo "check exit $?"; grep -E "FAILED|refused|panicked|^check:" $res/check.log | head -20
lengths=512,2048,8192,32768
for round in 1 2; do for b in base new; do
  for model in "smollm2 9 3 64" "llama3-8b 32 8 128"; do set -- $model
    timeout 100 /tmp/ab/$b --json --burn-max-len 0 --budget-ms 200 --batch 1 --heads $2 --kv-heads $3 --head-dims $4 \
      --lengths $lengths --query-rows 1 --dtype bf16 --group-sizes 1,2 --causal true --representatives mean \
      2>> $res/$b.log | sed "s/^{/{\"build\":\"$b\",\"round\":$round,\"model\":\"$1\",/" >> $res/decode.jsonl
  done
done; done
for model in "smollm2 9 3 64" "llama3-8b 32 8 128"; do set -- $model
  timeout 60 python3 benchmarks/sdpa_decode.py --b 1 --h $2 --kv-heads $3 --d $4 --nq 1 --n $lengths --dtype bfloat16 \
    | sed "s/^{/{\"model\":\"$1\",/" >> $res/sdpa.jsonl 2>> $res/sdpa.log
done
python3 - $res/decode.jsonl $res/sdpa.jsonl <<'PY'
import json, sys
from collections import defaultdict
t = defaultdict(list)
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("median_ms") is None: continue
    t[(r["model"], r["seq"], r["method"], r["build"])].append(r["median_ms"])
sd = {}
for l in open(sys.argv[2]):
    r = json.loads(l); sd[(r["model"], r.get("n"), r.get("impl"))] = (r.get("ms"), r.get("gbps"))
keys = sorted({k[:3] for k in t})
print("model N method | base ms | new ms | new/base")
for k in keys:
    b, n = min(t.get(k + ("base",), [0]) or [0]), min(t.get(k + ("new",), [0]) or [0])
    print(*k, "|", round(b, 4), "|", round(n, 4), "|", round(n / b, 3) if b else "-")
for k, r in sorted(sd.items()): print("sdpa", k, r)
PY
for b in new; do
  timeout 90 ncu --clock-control none --section SpeedOfLight --kernel-name regex:split_keys --launch-skip 5 --launch-count 1 \
    /tmp/ab/$b --burn-max-len 0 --budget-ms 1 --batch 1 --heads 32 --kv-heads 8 --head-dims 128 --lengths 32768 \
    --query-rows 1 --dtype bf16 --group-sizes 1 --causal true > $res/ncu-$b.txt 2>&1
  echo "ncu $b"; grep -E "Duration|Memory Throughput|DRAM Throughput" $res/ncu-$b.txt | head -6
done
tar czf $OUT/res.tgz -C $res .
