#!/usr/bin/env python3
"""Markdown table of one results folder: distr_bench.jsonl (our kernel, Burn) and sdpa.jsonl
(PyTorch SDPA), median ms (exact-equivalent TFLOP/s) and the ratios the README reports.
Measurements missing there (Burn's, when that call skipped it) are taken from the extra
distr_bench JSON-lines files given after the folder, in order.

Usage: python3 benchmarks/table.py benchmarks/results/<date>-<card> [more.jsonl ...]
"""
import json
import sys
from pathlib import Path

folder = Path(sys.argv[1])
ours = [json.loads(line) for line in open(folder / "distr_bench.jsonl")]
for extra in sys.argv[2:]:
    ours += [json.loads(line) for line in open(extra)]
sdpa = [json.loads(line) for line in open(folder / "sdpa.jsonl")]


def find(rows, key, **match):
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row.get(key)
    return None


def cell(ms, tflops):
    return "-" if ms is None else f"{ms:.2f} ({tflops:.0f})"


def ratio(numerator, denominator):
    return "-" if numerator is None or denominator is None else f"{numerator / denominator:.2f}x"


methods = ["exact_kernel", "distr_g2", "distr_g4", "distr_g8", "burn_attention"]
print("| N | d | causal | exact (G=1) | G=2 | G=4 | G=8 | Burn | FA2 | cuDNN "
      "| exact vs Burn | G=2 / G=4 / G=8 vs exact | exact vs FA2 | G=2 vs FA2 |")
print("|" + " --- |" * 14)
keys = sorted({(r["seq"], r["head_dim"], r["causal"]) for r in ours})
for seq, dim, causal in keys:
    at = dict(seq=seq, head_dim=dim, causal=causal)
    ms = {m: find(ours, "median_ms", method=m, **at) for m in methods}
    tf = {m: find(ours, "tflops", method=m, **at) for m in methods}
    fa2 = find(sdpa, "ms", impl="torch-flash2", n=seq, d=dim, causal=causal)
    fa2_tf = find(sdpa, "tflops", impl="torch-flash2", n=seq, d=dim, causal=causal)
    cudnn = find(sdpa, "ms", impl="torch-cudnn", n=seq, d=dim, causal=causal)
    cudnn_tf = find(sdpa, "tflops", impl="torch-cudnn", n=seq, d=dim, causal=causal)
    exact = ms["exact_kernel"]
    grouped = " / ".join(ratio(exact, ms[m]) for m in ["distr_g2", "distr_g4", "distr_g8"])
    print(f"| {seq} | {dim} | {'yes' if causal else 'no'} | "
          + " | ".join(cell(ms[m], tf[m]) for m in methods)
          + f" | {cell(fa2, fa2_tf)} | {cell(cudnn, cudnn_tf)} | {ratio(ms['burn_attention'], exact)} | {grouped}"
          + f" | {ratio(fa2, exact)} | {ratio(fa2, ms['distr_g2'])} |")

# The paper code's variant (`--representatives ...,sampled-keys`), where the call timed it.
sampled = [f"distr_g{g}:sampled-keys" for g in (2, 4, 8)]
if any(row["method"] in sampled for row in ours):
    print("\nSampledKeys (Q' sums the group, K' selects one key column per group):\n")
    print("| N | d | causal | exact (G=1) | G=2 | G=4 | G=8 | FA2 | G=2 / G=4 / G=8 vs exact "
          "| G=2 / G=4 / G=8 vs FA2 | G=2 vs Sample's G=2 |")
    print("|" + " --- |" * 11)
    for seq, dim, causal in keys:
        at = dict(seq=seq, head_dim=dim, causal=causal)
        ms = {m: find(ours, "median_ms", method=m, **at) for m in ["exact_kernel", "distr_g2"] + sampled}
        tf = {m: find(ours, "tflops", method=m, **at) for m in ["exact_kernel"] + sampled}
        fa2 = find(sdpa, "ms", impl="torch-flash2", n=seq, d=dim, causal=causal)
        fa2_tf = find(sdpa, "tflops", impl="torch-flash2", n=seq, d=dim, causal=causal)
        print(f"| {seq} | {dim} | {'yes' if causal else 'no'} | "
              + " | ".join(cell(ms[m], tf[m]) for m in ["exact_kernel"] + sampled)
              + f" | {cell(fa2, fa2_tf)} | " + " / ".join(ratio(ms["exact_kernel"], ms[m]) for m in sampled)
              + " | " + " / ".join(ratio(fa2, ms[m]) for m in sampled)
              + f" | {ratio(ms['distr_g2'], ms[sampled[0]])} |")
