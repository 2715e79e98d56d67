#!/usr/bin/env python3
"""The README's figures, from committed results only (needs matplotlib).

kernel-speed.png: exact-equivalent TFLOP/s against N of our exact kernel, DistrAttention at G=2
and G=4 (Sample) and at G=2 with the paper code's SampledKeys, PyTorch's FlashAttention-2 and
cuDNN, one panel per (head dim, causal), from one results folder of `benchmarks/run_gpu.sh`
(distr_bench.jsonl and sdpa.jsonl).

vit-variants.png: the ViT's saliency Pearson with exact attention per DistrAttention setting
(G = 2 everywhere), each photo's mean over the hyperplane draws as a dot and the mean over
photos with the range of the per-draw means as a bar, from benchmarks/results/vit-seeds/
(distr-vit/scripts/seed_sweep.sh).

Usage: python3 benchmarks/figures.py [RESULTS_DIR] [OUT_DIR]
       (defaults: benchmarks/results/2026-12-03-h200-v4/final, benchmarks/figures)
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/2026-12-03-h200-v4/final")
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


VIT_SEEDS = Path("benchmarks/results/vit-seeds")
VIT_SETTINGS = [("sample", "Sample"), ("mean", "Mean\n(default)"), ("projected", "Projected"),
                ("sampled-keys", "SampledKeys\n(paper code)"), ("sampled-keys-strided", "SampledKeys,\nstrided"),
                ("mean-gram", "Mean,\nGram"), ("mean-gram-key-weighted", "Mean, Gram\nkey-weighted"),
                ("sampled-keys-gram", "SampledKeys,\nGram")]


def vit_variants():
    reports = [(label, json.load(open(VIT_SEEDS / f"{name}.json"))) for name, label in VIT_SETTINGS
               if (VIT_SEEDS / f"{name}.json").exists()]
    figure, axis = plt.subplots(figsize=(11, 4.2))
    for index, (label, report) in enumerate(reports):
        mean = report["mean"]["saliency_pearson"]
        low, high = report["seed_min"]["saliency_pearson"], report["seed_max"]["saliency_pearson"]
        axis.bar(index, mean, color="C0" if report["seeds"] > 1 else "C2", alpha=0.6)
        axis.errorbar(index, mean, yerr=[[mean - low], [high - mean]], color="k", capsize=4)
        photos = [image["saliency_pearson"] for image in report["images"]]
        axis.scatter([index + 0.25] * len(photos), photos, s=8, color="k", alpha=0.5)
    axis.set_xticks(range(len(reports)), [label for label, _ in reports], fontsize=8)
    axis.set_ylabel("saliency Pearson with exact")
    axis.set_ylim(-0.1, 1.0)
    axis.axhline(0.95, color="C3", linestyle="--", linewidth=1, label="issue target 0.95")
    axis.legend(fontsize=8, loc="lower left")
    axis.grid(axis="y", alpha=0.3)
    axis.set_title("DINOv2-S/14 saliency, G=2 in all 12 layers, 12 held-out images: mean over photos "
                   "(bar; whisker: range over 10 hyperplane draws, green: deterministic grouping), "
                   "each photo (dots)", fontsize=8)
    figure.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUT / "vit-variants.png", dpi=110)
    print(f"wrote {OUT / 'vit-variants.png'}")


if __name__ == "__main__":
    kernel_speed()
    if VIT_SEEDS.is_dir():
        vit_variants()
