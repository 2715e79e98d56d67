#!/usr/bin/env python3
"""Markdown tables of one model-benchmark call: our DINOv2-S/14 backbone and SmolLM2-135M,
exact and DistrAttention G=2, against transformers on the same card (benchmarks/models_gpu.sh),
or SmolLM2-135M on each CPU backend against transformers on the same cores
(benchmarks/models_cpu.sh: the folder holds cpu.txt).

Usage: python3 benchmarks/models_table.py benchmarks/results/<folder>
"""
import json
import sys
from pathlib import Path


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")] if path.exists() else []


def main():
    folder = Path(sys.argv[1])
    if (folder / "cpu.txt").exists():
        return cpu_table(folder)
    vit, llama, hf = (lines(folder / name) for name in ("vit.jsonl", "llama.jsonl", "transformers.jsonl"))
    card = (folder / "card.txt").read_text().strip() if (folder / "card.txt").exists() else "?"
    dtype = (vit or llama or [{}])[0].get("dtype", "?")
    print(f"Card: {card}; {dtype}, batch 1, random weights; transformers {hf[0]['transformers'] if hf else '?'}, "
          f"torch {hf[0]['torch'] if hf else '?'} (SDPA).\n")

    print("DINOv2-S/14 backbone, median ms of a forward pass:\n")
    print("| px | tokens | transformers | ours exact | ours G=2 | exact vs transformers | G=2 vs exact |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size in sorted({row["size"] for row in vit}):
        ours = {row["attention"]: row["median_ms"] for row in vit if row["size"] == size}
        theirs = next((row["median_ms"] for row in hf if row.get("model") == "DINOv2-S/14" and row["size"] == size), None)
        tokens = next(row["tokens"] for row in vit if row["size"] == size)
        exact, distr = ours.get("exact"), ours.get("distr")
        print(f"| {size} | {tokens} | {fmt(theirs)} | {fmt(exact)} | {fmt(distr)} | {ratio(theirs, exact)} | {ratio(exact, distr)} |")

    print("\nSmolLM2-135M prefill, tokens/s (best of the repeats):\n")
    print("| context | transformers | ours exact | ours G=2 | exact vs transformers | G=2 vs exact |")
    print("| --- | --- | --- | --- | --- | --- |")
    for context in sorted({row["context"] for row in llama}):
        ours = {row["attention"]: row["prefill_tokens_per_second"] for row in llama if row["context"] == context}
        theirs = next((row["tokens_per_s"] for row in hf if row.get("phase") == "prefill" and row["tokens"] == context), None)
        exact, distr = ours.get("exact"), ours.get("distr")
        print(f"| {context} | {fmt(theirs, 0)} | {fmt(exact, 0)} | {fmt(distr, 0)} | {ratio(exact, theirs)} | {ratio(distr, exact)} |")

    print("\nSmolLM2-135M decode at the end of the context, tokens/s:\n")
    print("| context | transformers `generate` | ours exact | ours G=2 | exact vs transformers |")
    print("| --- | --- | --- | --- | --- |")
    for context in sorted({row["context"] for row in llama}):
        ours = {row["attention"]: row["decode_tokens_per_second"] for row in llama if row["context"] == context}
        theirs = next((row["tokens_per_s"] for row in hf if row.get("phase") == "decode" and row["context"] == context), None)
        exact, distr = ours.get("exact"), ours.get("distr")
        print(f"| {context} | {fmt(theirs)} | {fmt(exact)} | {fmt(distr)} | {ratio(exact, theirs)} |")


def cpu_table(folder):
    llama, hf = (lines(folder / name) for name in ("llama.jsonl", "transformers.jsonl"))
    cpu = " ".join((folder / "cpu.txt").read_text().split("\n")).strip()
    print(f"CPU: {cpu}; f32, batch 1, random weights; transformers {hf[0]['transformers'] if hf else '?'}, "
          f"torch {hf[0]['torch'] if hf else '?'} (SDPA).\n")
    theirs_prefill = next((row["tokens_per_s"] for row in hf if row.get("phase") == "prefill"), None)
    theirs_decode = next((row["tokens_per_s"] for row in hf if row.get("phase") == "decode"), None)
    print("| SmolLM2-135M | context | prefill tokens/s | decode tokens/s | prefill vs transformers | decode vs transformers |")
    print("| --- | --- | --- | --- | --- | --- |")
    context = next((row["tokens"] for row in hf if row.get("phase") == "prefill"), "?")
    print(f"| transformers | {context} | {fmt(theirs_prefill, 0)} | {fmt(theirs_decode, 1)} | 1.00x | 1.00x |")
    for row in llama:
        name = f"ours, {row['backend']}, {'exact' if row['attention'] == 'exact' else 'G=2'}"
        prefill, decode = row["prefill_tokens_per_second"], row["decode_tokens_per_second"]
        print(f"| {name} | {row['context']} | {fmt(prefill, 0)} | {fmt(decode, 1)} | {ratio(prefill, theirs_prefill)} "
              f"| {ratio(decode, theirs_decode)} |")


def fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(numerator, denominator):
    """numerator / denominator as `1.23x` (a speed ratio: pass times as (theirs, ours))."""
    if numerator is None or denominator is None or denominator == 0:
        return "-"
    return f"{numerator / denominator:.2f}x"


if __name__ == "__main__":
    main()
