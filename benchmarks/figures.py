#!/usr/bin/env python3
"""The README's figures, from committed results only (needs matplotlib).

kernel-speed.png: exact-equivalent TFLOP/s against N of our exact kernel, DistrAttention at G=2
and G=4 (Sample) and at G=2 with the paper code's SampledKeys, PyTorch's FlashAttention-2 and
cuDNN, one panel per (head dim, causal), from one results folder of `benchmarks/run_gpu.sh`
(distr_bench.jsonl and sdpa.jsonl).

Usage: python3 benchmarks/figures.py [RESULTS_DIR] [OUT_DIR]
       (defaults: benchmarks/results/2026-12-02-h200-v3/final, benchmarks/figures)
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/2026-12-02-h200-v3/final")
OUT = Path(sys.argv[2] if len(sys.argv) > 2 else "benchmarks/figures")

OURS = [("exact_kernel", "ours, exact", "C0", "-"), ("distr_g2", "ours, G=2", "C1", "-"),
        ("distr_g4", "ours, G=4", "C2", "-"), ("distr_g2:sampled-keys", "ours, G=2 SampledKeys", "C3", "-")]
SDPA = [("torch-flash2", "PyTorch FlashAttention-2", "k", "--"), ("torch-cudnn", "cuDNN", "0.5", "--")]


def lines(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def kernel_speed():
    ours = lines(RESULTS / "distr_bench.jsonl")
    sdpa = [row for row in lines(RESULTS / "sdpa.jsonl") if row.get("tflops")]
    card = (RESULTS / "card.txt").read_text().split(",")[0].strip()
    dims = sorted({row["head_dim"] for row in ours})
    figure, axes = plt.subplots(2, len(dims), figsize=(5.5 * len(dims), 8), sharex=True, squeeze=False)
    for column, dim in enumerate(dims):
        for row_index, causal in enumerate([False, True]):
            axis = axes[row_index][column]
            for method, label, color, style in OURS:
                points = sorted((r["seq"], r["tflops"]) for r in ours
                                if r["method"] == method and r["head_dim"] == dim and r["causal"] == causal)
                if points:
                    axis.plot(*zip(*points), style, color=color, marker="o", label=label)
            for impl, label, color, style in SDPA:
                points = sorted((r["n"], r["tflops"]) for r in sdpa
                                if r["impl"] == impl and r["d"] == dim and r["causal"] == causal)
                if points:
                    axis.plot(*zip(*points), style, color=color, marker="s", label=label)
            axis.set_xscale("log", base=2)
            axis.set_title(f"d = {dim}, {'causal' if causal else 'non-causal'}")
            axis.set_ylabel("exact-equivalent TFLOP/s")
            axis.grid(alpha=0.3)
    for axis in axes[-1]:
        axis.set_xlabel("sequence length N")
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"Attention forward, fp16, B=4, H=16 ({card}, {RESULTS})", fontsize=9)
    figure.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUT / "kernel-speed.png", dpi=110)
    print(f"wrote {OUT / 'kernel-speed.png'}")


if __name__ == "__main__":
    kernel_speed()
