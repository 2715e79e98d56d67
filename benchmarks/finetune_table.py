"""Markdown tables from `benchmarks/finetune_gpu.sh`'s reports: one row per run (held-out
perplexity before and after, training speed, the first step's time) and the held-out curves
side by side.

Usage: python3 benchmarks/finetune_table.py RESULTS_DIR   (reads RESULTS_DIR/*.json)
"""
import json
import sys
from pathlib import Path


def load(folder):
    runs = {}
    for path in sorted(Path(folder).glob("*.json")):
        text = path.read_text().strip()
        if text:
            runs[path.stem] = json.loads(text.splitlines()[-1])
    return runs


def main(folder):
    runs = load(folder)
    if not runs:
        sys.exit(f"no reports in {folder}")
    print("| run | training tokens | held-out perplexity before | after | top-1 after | tokens/s | first step (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, run in runs.items():
        report = run["report"]
        print(
            f"| {name} | {report['tokens']:,} | {run['perplexity_before']:.2f} | {run['perplexity_after']:.2f} "
            f"| {100 * run['top1_after']:.1f}% | {report['tokens_per_second'] or float('nan'):,.0f} "
            f"| {report['first_step_seconds']:.1f} |"
        )
    steps = sorted({point["step"] for run in runs.values() for point in run["curve"]})
    print()
    print("| step | training tokens | " + " | ".join(runs) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in runs) + " |")
    tokens_per_step = next(iter(runs.values()))["report"]["tokens"] // next(iter(runs.values()))["report"]["steps"]
    for step in steps:
        cells = []
        for run in runs.values():
            point = next((p for p in run["curve"] if p["step"] == step), None)
            cells.append("-" if point is None else f"{point['perplexity']:.2f}")
        print(f"| {step} | {step * tokens_per_step:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
