#!/usr/bin/env python3
"""PyTorch's attention backward on the lent GPU, the anchor of `distr-bench --backward`:
scaled_dot_product_attention with the FlashAttention-2 backend (and cuDNN's), fp16 or bf16,
timed as the backward alone (`out.backward(grad)` on a kept graph) and as a forward and
backward, with the peak memory of one forward and backward.

Run it in the same device call as `distr-bench --backward`. One JSON object per line:
  {"impl": "torch-flash2", "pass": "backward", "b": 4, "h": 16, "n": 4096, "d": 64,
   "causal": false, "dtype": "float16", "ms": 2.1, "tflops": 327.0, "peak_mib": 300.0, ...}
TFLOP/s counts FlashAttention-2's FLOPs: 4*b*h*n*n*d per forward (halved when causal), 2.5
times that for a backward, 3.5 times for both.

Usage: python3 sdpa_backward.py [--b 4] [--h 16] [--n 1024,4096] [--d 64,128] [--causal]
                                [--dtype float16|bfloat16]
"""
import argparse, json

import torch
import torch.nn.functional as F
import triton.testing as tt
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = [
    ("torch-flash2", SDPBackend.FLASH_ATTENTION),
    ("torch-cudnn", SDPBackend.CUDNN_ATTENTION),
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--b", type=int, default=4)
    p.add_argument("--h", type=int, default=16)
    p.add_argument("--n", default="1024,4096,16384")
    p.add_argument("--d", default="64,128")
    p.add_argument("--causal", action="store_true")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    dev = torch.cuda.get_device_name()
    for n in map(int, a.n.split(",")):
        for d in map(int, a.d.split(",")):
            shape = (a.b, a.h, n, d)
            q, k, v = (torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
            grad = torch.randn(shape, device="cuda", dtype=dtype)
            forward_flops = 4 * a.b * a.h * n * n * d / (2 if a.causal else 1)
            for name, backend in BACKENDS:
                base = dict(impl=name, b=a.b, h=a.h, n=n, d=d, causal=a.causal, dtype=a.dtype, device=dev)
                try:
                    with sdpa_kernel(backend):
                        def train():
                            F.scaled_dot_product_attention(q, k, v, is_causal=a.causal).backward(grad)

                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                        train()
                        torch.cuda.synchronize()
                        peak_mib = torch.cuda.max_memory_allocated() / 2**20
                        out = F.scaled_dot_product_attention(q, k, v, is_causal=a.causal)
                        backward_ms = tt.do_bench(lambda: out.backward(grad, retain_graph=True),
                                                  warmup=25, rep=100, return_mode="median", grad_to_none=[q, k, v])
                        train_ms = tt.do_bench(train, warmup=25, rep=100, return_mode="median", grad_to_none=[q, k, v])
                        del out
                    for kind, ms, passes in (("backward", backward_ms, 2.5), ("train", train_ms, 3.5)):
                        row = dict(base, **{"pass": kind})
                        row.update(ms=round(ms, 4), tflops=round(passes * forward_flops / ms / 1e9, 1),
                                   peak_mib=round(peak_mib, 1))
                        print(json.dumps(row), flush=True)
                except Exception as e:  # a backend may not support a shape
                    print(json.dumps(dict(base, error=f"{type(e).__name__}: {e}"[:200])), flush=True)


if __name__ == "__main__":
    main()
