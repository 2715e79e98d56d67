#!/usr/bin/env python3
"""Kernels a decode step launches, from two CubeCL profiling logs at the "minimal" level
(`Executing <name>` per kernel execution) of runs that differ only in their decode steps
(decode_profile_gpu.sh): the difference of the counts, by kernel name (its generic and
comptime arguments cut off), divided by the steps the longer run adds.

    python3 benchmarks/kernel_counts.py SHORT.log LONG.log STEPS
"""
import collections
import re
import sys


def counts(path):
    names = collections.Counter()
    with open(path, errors="replace") as log:
        for line in log:
            match = re.search(r"Executing (.*)", line)
            if match:
                names[re.split(r"[<{( ]", match.group(1).strip(), maxsplit=1)[0]] += 1
    return names


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    short, long, steps = counts(sys.argv[1]), counts(sys.argv[2]), int(sys.argv[3])
    added = {name: long[name] - short.get(name, 0) for name in long}
    total = sum(added.values())
    print(f"runs: {sum(short.values())} and {sum(long.values())} executions; {total} added by {steps} steps: {total / steps:.1f} per step")
    print("| kernel | per step |")
    print("| --- | --- |")
    for name, count in sorted(added.items(), key=lambda item: -item[1]):
        if count:
            print(f"| `{name}` | {count / steps:.2f} |")


if __name__ == "__main__":
    main()
