#!/usr/bin/env python3
"""The table of vulkan_gpu.sh's outputs: per (dtype, d, N), our exact and G = 2 ms on WGSL,
SPIR-V and CUDA, Burn's attention on WGSL and SPIR-V, PyTorch FA2 (f16 only), the ratios issue
17 asks for, and the kernel path each of our rows ran.

Usage: python3 benchmarks/vulkan_table.py RAW_DIR   (the folder raw.tar.gz unpacks to: grid-<build>-<dtype>.jsonl,
sdpa.jsonl). Cells without a measurement print '-'.
"""
import json, os, sys


def rows(path):
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def main(raw):
    grid = {}  # (build, dtype, method, d, n) -> row
    for build in ("wgsl", "spirv", "cuda"):
        for dtype in ("f16", "f32"):
            for r in rows(os.path.join(raw, f"grid-{build}-{dtype}.jsonl")):
                if r.get("causal") or r["seq_q"] != r["seq"]:
                    continue
                grid[(build, dtype, r["method"], r["head_dim"], r["seq"])] = r
    fa2 = {}
    for r in rows(os.path.join(raw, "sdpa.jsonl")):
        if r.get("impl") == "torch-flash2" and "ms" in r and not r.get("causal"):
            fa2[(r["d"], r["n"])] = r["ms"]

    def ms(build, dtype, method, d, n):
        r = grid.get((build, dtype, method, d, n))
        return r["median_ms"] if r else None

    def cell(x):
        return "-" if x is None else f"{x:.3f}"

    def ratio(a, b):  # b / a: how many times faster a is than b
        return "-" if a is None or b is None else f"{b / a:.2f}x"

    paths = {}
    for (build, dtype, method, d, n), r in grid.items():
        if r.get("path"):
            paths.setdefault((build, dtype), set()).add(f"{method}={r['path']}")
    print("| dtype | d | N | exact WGSL | exact SPIR-V | exact CUDA | G=2 WGSL | G=2 SPIR-V | G=2 CUDA "
          "| Burn WGSL | Burn SPIR-V | FA2 | SPIR-V exact vs Burn SPIR-V | SPIR-V exact vs CUDA exact "
          "| G=2 vs exact (SPIR-V) | G=2 vs exact (WGSL) | WGSL vs SPIR-V (exact) |")
    print("|" + " --- |" * 17)
    for dtype in ("f16", "f32"):
        for d in (64, 128):
            for n in (1024, 4096, 8192, 16384):
                e = {b: ms(b, dtype, "exact_kernel", d, n) for b in ("wgsl", "spirv", "cuda")}
                g = {b: ms(b, dtype, "distr_g2", d, n) for b in ("wgsl", "spirv", "cuda")}
                burn = {b: ms(b, dtype, "burn_attention", d, n) for b in ("wgsl", "spirv")}
                f = fa2.get((d, n)) if dtype == "f16" else None
                cells = [dtype, str(d), str(n)] + [cell(e[b]) for b in ("wgsl", "spirv", "cuda")]
                cells += [cell(g[b]) for b in ("wgsl", "spirv", "cuda")] + [cell(burn["wgsl"]), cell(burn["spirv"]), cell(f)]
                # speedups: Burn time / our time; our SPIR-V speed as a fraction of CUDA's
                cells += [ratio(e["spirv"], burn["spirv"]), ratio(e["spirv"], e["cuda"])]
                cells += [ratio(g["spirv"], e["spirv"]), ratio(g["wgsl"], e["wgsl"]), ratio(e["spirv"], e["wgsl"])]
                print("| " + " | ".join(cells) + " |")
    print()
    print("Ratios are the second time over the first: above 1x, the first (our SPIR-V exact, G = 2, SPIR-V) is faster.")
    for key in sorted(paths):
        print(f"paths {key[0]} {key[1]}: {', '.join(sorted(paths[key]))}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "raw")
