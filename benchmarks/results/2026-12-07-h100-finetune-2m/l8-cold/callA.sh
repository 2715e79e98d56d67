#!/usr/bin/env bash
# Call A: stage the binary, corpus and the GGUF's first part in /tmp/ft (no cache filling).
set -u
mkdir -p /tmp/ft && cp .gpu/ft/part1 /tmp/ft/gguf.xz.part1
xz -dc .gpu/ft/distr-llama.xz > /tmp/ft/distr-llama && chmod +x /tmp/ft/distr-llama
tar -xJf .gpu/ft/corpus.tar.xz -C /tmp/ft
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/card.txt"
ls -la /tmp/ft
