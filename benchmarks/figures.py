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

accuracy-flops.png: what each layer tolerates and what a plan buys. Per layer, DINOv2-S's
saliency Pearson with exact when that layer alone runs G=2 (`distr-vit calibrate`'s sensitivity
pass) and SmolLM2-135M's perplexity when that layer runs G=8, 4 or 2 (`distr-llama calibrate`'s
trials, last layer first, accepted layers kept); then accuracy against the attention FLOPs a plan
saves (the calibrated per-layer plans, and one G in every layer), FLOPs counted as
`distr_attn::experiment::calibration::AttentionFlops` does (hashing included).

saliency-overlays.png: one photo's saliency map, exact against DistrAttention settings, as
`distr-vit saliency --png` drew them, each titled with its Pearson correlation with exact
(from the `.npy` maps beside them in benchmarks/results/saliency-astronaut/, made by the
commands in that folder's README).

Usage: python3 benchmarks/figures.py [RESULTS_DIR] [OUT_DIR]
       (defaults: benchmarks/results/2026-12-03-h200-v4/final, benchmarks/figures)
"""
import json
import sys
from pathlib import Path

import matplotlib
import numpy

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


RESULTS_ROOT = Path("benchmarks/results")
# Model shapes for the FLOP count: (layers, heads, head dim); LSH codes of 16 bits.
DINOV2_SMALL, SMOLLM2, PROJECTIONS = (12, 6, 64), (30, 9, 64), 16


def saved_fraction(shape, tokens, group_sizes, grouping="lsh"):
    """1 - planned / exact attention FLOPs for one group size per layer (1: exact); grouping
    costs as `Grouping::flops` with Mean: the LSH codes' products, or for Gram the query
    columns' pairwise distances."""
    layers, heads, dim = shape
    score_product = 2.0 * tokens * tokens * dim * heads
    grouping_flops = heads * (2.0 * tokens * dim * PROJECTIONS if grouping == "lsh" else 1.5 * tokens * dim * (dim - 1))
    planned = sum(score_product / g + score_product + (grouping_flops if g > 1 else 0.0) for g in group_sizes)
    return 1.0 - planned / (2.0 * score_product * layers)


def plan_group_sizes(plan):
    """Per layer, the group size of a plan as `calibrate` writes it (1: exact)."""
    return [1 if layer == "Exact" else layer["Distr"]["group_size"] for layer in plan["per_layer"]]


def finish(axis, xlabel, ylabel, title, legend_size=8, legend_location="best"):
    """Labels, title, legend and grid of one panel of accuracy_flops."""
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=legend_size, loc=legend_location)
    axis.grid(alpha=0.3)


def accuracy_flops():
    vit_plans = {target: json.load(open(RESULTS_ROOT / f"vit-calibrate-{target}.json")) for target in ("0.95", "0.99")}
    llama = json.loads((RESULTS_ROOT / "llama-calibrate-cuda-h200.jsonl").read_text().splitlines()[0])
    figure, axes = plt.subplots(2, 2, figsize=(12, 8))

    axis = axes[0][0]
    layers = vit_plans["0.95"]["layers"]
    axis.plot([l["layer"] for l in layers], [l["alone_correlation"] for l in layers], "o-", color="C0")
    for target, color in (("0.95", "C3"), ("0.99", "C2")):
        axis.axhline(float(target), color=color, linestyle="--", linewidth=1, label=f"budget {target}")
    finish(axis, "layer run with G=2 (the others exact)", "saliency Pearson with exact",
           "DINOv2-S/14: each layer alone at G=2 (Sample, calibration images)")

    axis = axes[0][1]
    for group_size, color in ((2, "C0"), (4, "C1"), (8, "C3")):
        points = sorted((t["layer"], t["perplexity"]) for t in llama["trials"] if t["group_size"] == group_size)
        axis.plot(*zip(*points), "o-", color=color, markersize=4, label=f"G={group_size}")
    axis.axhline(llama["exact_perplexity"], color="k", linewidth=1, label="exact")
    axis.axhline(llama["budget"], color="C3", linestyle="--", linewidth=1, label="budget (+1%)")
    finish(axis, "layer tried (last first; accepted layers stay approximate)", "perplexity, 2048 calibration tokens",
           "SmolLM2-135M: each layer's trial in the calibration search")

    axis = axes[1][0]
    layers, heads, dim = DINOV2_SMALL
    # Exact attention is 4 N² d per head and layer: the calibration's own count gives N.
    tokens = round((vit_plans["0.95"]["exact_attention_flops"] / (4 * dim * heads * layers)) ** 0.5)
    for target, plan in vit_plans.items():
        saved = saved_fraction(DINOV2_SMALL, tokens, plan_group_sizes(plan["plan"]))
        if abs(saved - plan["attention_flops_saved"]) > 1e-9:
            sys.exit(f"the FLOP count here ({saved}) disagrees with calibrate's ({plan['attention_flops_saved']})")
        axis.scatter(100 * saved, plan["correlation"], color="C2", marker="s", zorder=3)
        axis.annotate(f"calibrated ({target})", (100 * saved, plan["correlation"]),
                      fontsize=7, xytext=(4, -10), textcoords="offset points")
    for target in ("0.99", "0.95"):
        report = json.load(open(RESULTS_ROOT / f"vit-calibrate-gram-{target}.json"))
        saved = saved_fraction(DINOV2_SMALL, tokens, report["search"]["group_sizes"], "gram")
        if abs(saved - report["flops"]["saved_fraction"]) > 1e-9:
            sys.exit(f"the FLOP count here ({saved}) disagrees with calibrate's ({report['flops']['saved_fraction']})")
        axis.scatter(100 * saved, report["correlation"], color="C4", marker="s", zorder=3)
        axis.annotate(f"calibrated, Mean + Gram ({target})", (100 * saved, report["correlation"]),
                      fontsize=7, xytext=(4, 4), textcoords="offset points")
    for group_size in (2, 4, 8):
        report = json.load(open(RESULTS_ROOT / f"vit-fidelity-g{group_size}-lsh-mean.json"))
        saved = 100 * saved_fraction(DINOV2_SMALL, tokens, [group_size] * DINOV2_SMALL[0])
        label = f"one draw, {len(report['images'])} README photos" if group_size == 2 else None
        axis.scatter(saved, report["mean"]["saliency_pearson"], color="C1", zorder=3, label=label)
        axis.annotate(f"G={group_size} everywhere", (saved, report["mean"]["saliency_pearson"]), fontsize=7,
                      xytext=(4, 4), textcoords="offset points")
    seeds = json.load(open(VIT_SEEDS / "mean.json"))
    saved = 100 * saved_fraction(DINOV2_SMALL, tokens, [2] * DINOV2_SMALL[0])
    mean, low, high = (seeds[key]["saliency_pearson"] for key in ("mean", "seed_min", "seed_max"))
    axis.errorbar(saved, mean, yerr=[[mean - low], [high - mean]], color="C0", marker="o", capsize=4,
                  label="G=2 everywhere, 10 draws, 12 held-out photos")
    finish(axis, "attention FLOPs saved (%)", "saliency Pearson with exact",
           "DINOv2-S/14: accuracy against FLOPs saved (Mean; calibrated plans: Sample, or Mean + Gram)", 7, "lower left")

    axis = axes[1][1]
    exact = json.load(open(RESULTS_ROOT / "llama-seeds" / "exact-macbeth.json"))["perplexity"]
    # Counted here, not read from the result: that run's count left out the LSH codes.
    saved = 100 * saved_fraction(SMOLLM2, llama["flops"]["seq"], llama["group_size_per_layer"])
    axis.scatter(saved, llama["perplexity"] / llama["exact_perplexity"], color="C2", marker="s", zorder=3)
    axis.annotate("calibrated (+1%)", (saved, llama["perplexity"] / llama["exact_perplexity"]), fontsize=7,
                  xytext=(4, 4), textcoords="offset points")
    for name, color in (("mean", "C0"), ("sample", "C1"), ("sampled-keys", "C3"), ("mean-gram", "C4")):
        report = json.load(open(RESULTS_ROOT / "llama-seeds" / f"{name}-macbeth.json"))
        grouping = "gram" if name.endswith("gram") else "lsh"
        saved = 100 * saved_fraction(SMOLLM2, report["tokens"], [2] * SMOLLM2[0], grouping)
        low, high = report["perplexity_range"]
        ratio = report["perplexity"] / exact
        axis.errorbar(saved, ratio, yerr=[[ratio - low / exact], [high / exact - ratio]], color=color, marker="o",
                      capsize=4, label=f"G=2 everywhere, {name}, {report['seeds']} draw(s)")
    axis.set_yscale("log")
    finish(axis, "attention FLOPs saved (%)", "perplexity / exact (held-out Macbeth, 512 tokens)",
           "SmolLM2-135M: accuracy against FLOPs saved (calibrated: calibration text)", 7, "upper left")

    figure.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUT / "accuracy-flops.png", dpi=110)
    print(f"wrote {OUT / 'accuracy-flops.png'}")


SALIENCY = RESULTS_ROOT / "saliency-astronaut"
SALIENCY_SETTINGS = [("exact", "exact"), ("plan", "calibrated plan (0.99)"), ("g2-gram", "G=2 everywhere, Mean, Gram"),
                     ("g2", "G=2 everywhere, Mean (default)"), ("g4", "G=4 everywhere, Mean")]


def read_npy(path):
    """A `.npy` map (what `distr-vit saliency --out` writes), flattened, in f64."""
    return numpy.load(path).astype("float64").ravel()


def saliency_overlays():
    exact = read_npy(SALIENCY / "exact.npy")
    figure, axes = plt.subplots(1, len(SALIENCY_SETTINGS), figsize=(3.2 * len(SALIENCY_SETTINGS), 3.6))
    for axis, (name, label) in zip(axes, SALIENCY_SETTINGS):
        axis.imshow(plt.imread(SALIENCY / f"{name}.png"))
        pearson = numpy.corrcoef(exact, read_npy(SALIENCY / f"{name}.npy"))[0, 1]
        axis.set_title(f"{label}\nPearson {pearson:.3f}", fontsize=8)
        axis.axis("off")
    figure.suptitle("DINOv2-S/14 saliency on astronaut.jpg (one hyperplane draw, seed 0)", fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    OUT.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUT / "saliency-overlays.png", dpi=110)
    print(f"wrote {OUT / 'saliency-overlays.png'}")


if __name__ == "__main__":
    kernel_speed()
    if VIT_SEEDS.is_dir():
        vit_variants()
        accuracy_flops()
    if SALIENCY.is_dir():
        saliency_overlays()
