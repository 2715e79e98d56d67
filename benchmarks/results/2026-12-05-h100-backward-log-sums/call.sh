#!/usr/bin/env bash
# The device call behind this folder (H100), from the repository root, .gpu/kernel carried:
STEPS=check,grid,sdpa CHECK_S=200 GRID_S=270 SDPA_S=70 LENGTHS=1024,4096,16384 bash benchmarks/backward_gpu.sh
