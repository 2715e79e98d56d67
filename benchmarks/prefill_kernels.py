#!/usr/bin/env python3
"""Where a model's prefill spends its device time, from Nsight Compute's per-kernel durations
(benchmarks/prefill_profile_gpu.sh): one `ncu --csv --metrics gpu__time_duration.sum` log of a
program that runs whole forward passes, read in launch order.

A forward pass is found by its attention kernels (`--attention`, a regex on the kernel name):
`--layers` consecutive launches of it. The layers between the pass's first and last attention
launch (layers - 1 of them, each from one attention launch to the next) are its steady state:
what lies outside them (the embedding, the first layer's projections, the last layer's MLP, the
output head, decode steps) is left out, so the table is per layer, not per pass. Prints, for the
pass `--pass` (1-based; the last by default), the device microseconds per layer of each kernel
name, its launches per layer and its share, and one JSON line with the totals.

Usage: python3 prefill_kernels.py NCU_CSV --attention REGEX --layers 30 [--pass N] [--label NAME]
"""
import argparse
import csv
import json
import re
from collections import defaultdict


def kernels(path):
    """(name, microseconds) of each profiled launch, in launch order."""
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]
    rows = []
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        unit = row.get("Metric Unit", "ns")
        scale = {"ns": 1e-3, "nsecond": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}.get(unit, 1e-3)
        rows.append((int(row["ID"]), row["Kernel Name"], value * scale))
    rows.sort()
    return [(name, micros) for _, name, micros in rows]


def short_name(name):
    """The kernel's name without its return type and parameters, cut to 90 characters (template
    arguments tell apart, say, PyTorch's element-wise kernels)."""
    base = name.removeprefix("void ").split("(", 1)[0].strip()
    return (base or name)[:90]


def passes(launches, attention, layers):
    """Index lists of the attention launches of each forward pass."""
    indices = [i for i, (name, _) in enumerate(launches) if re.search(attention, name)]
    return [indices[i : i + layers] for i in range(0, len(indices) - layers + 1, layers)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("csv")
    p.add_argument("--attention", required=True, help="regex naming the attention kernel")
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--pass", dest="which", type=int, default=0, help="1-based; 0: the last")
    p.add_argument("--label", default="")
    a = p.parse_args()
    launches = kernels(a.csv)
    found = passes(launches, a.attention, a.layers)
    if not found:
        raise SystemExit(f"{a.csv}: no {a.layers} launches matching {a.attention!r} among {len(launches)} kernels")
    attention = found[a.which - 1 if a.which else -1]
    window = launches[attention[0] + 1 : attention[-1] + 1]
    steady = a.layers - 1
    micros, counts = defaultdict(float), defaultdict(int)
    for name, duration in window:
        micros[short_name(name)] += duration
        counts[short_name(name)] += 1
    total = sum(micros.values())
    print(f"{a.label}: {len(found)} passes of {a.layers} layers found; pass {a.which or len(found)}, "
          f"{steady} steady layers, {total / steady:.1f} us per layer, {len(window) / steady:.1f} launches per layer")
    print("| kernel | us per layer | launches per layer | share |")
    print("| --- | --- | --- | --- |")
    for name in sorted(micros, key=micros.get, reverse=True):
        print(f"| {name} | {micros[name] / steady:.1f} | {counts[name] / steady:.1f} | {micros[name] / total:.1%} |")
    print(json.dumps({"label": a.label, "passes": len(found), "us_per_layer": round(total / steady, 1),
                      "launches_per_layer": round(len(window) / steady, 1),
                      "kernels": {name: round(micros[name] / steady, 2) for name in micros}}))


if __name__ == "__main__":
    main()
