#!/usr/bin/env python3
"""PyTorch's attention on decode shapes, beside `distr-bench --query-rows`: a few query rows
against a long key/value cache with grouped-query heads, on the lent GPU, in the same call.

Prints one JSON object per line:
  {"impl": "torch-flash2", "b": 1, "h": 9, "kv_heads": 3, "nq": 1, "n": 8192, "d": 64,
   "dtype": "float16", "ms": 0.021, "gbps": 150.2, "device": "NVIDIA H200"}
`gbps` counts the K and V bytes read once. Without a mask (a single query row at the last
position sees every key, so this is the causal decode step too):
  torch-sdpa-gqa   scaled_dot_product_attention(enable_gqa=True), backend chosen by PyTorch
  torch-flash2     the FlashAttention-2 backend on K and V expanded to every query head
                   (expanded outside the timing, as a KV cache stored per query head would be)
  torch-cudnn      the cuDNN backend, likewise
  flash-attn-kvcache  flash_attn_with_kvcache (split-KV decode), when the flash_attn package exists

Usage: python3 sdpa_decode.py [--b 1] [--h 9] [--kv-heads 3] [--nq 1] [--n 512,8192] [--d 64]
                              [--dtype float16|bfloat16]
"""
import argparse, json

import torch
import torch.nn.functional as F
import triton.testing as tt
from torch.nn.attention import SDPBackend, sdpa_kernel


def bench(fn):
    return tt.do_bench(fn, warmup=50, rep=200, return_mode="median")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--b", type=int, default=1)
    p.add_argument("--h", type=int, default=9)
    p.add_argument("--kv-heads", type=int, default=3)
    p.add_argument("--nq", type=int, default=1)
    p.add_argument("--n", default="512,2048,8192,32768")
    p.add_argument("--d", default="64")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    dev = torch.cuda.get_device_name()
    try:
        from flash_attn import flash_attn_with_kvcache
    except ImportError:
        flash_attn_with_kvcache = None
    for n in map(int, a.n.split(",")):
        for d in map(int, a.d.split(",")):
            q = torch.randn(a.b, a.h, a.nq, d, device="cuda", dtype=dtype)
            k, v = (torch.randn(a.b, a.kv_heads, n, d, device="cuda", dtype=dtype) for _ in range(2))
            repeat = a.h // a.kv_heads
            k_full, v_full = (t.repeat_interleave(repeat, dim=1) for t in (k, v))
            methods = [
                ("torch-sdpa-gqa", lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)),
                ("torch-flash2", lambda: sdpa(SDPBackend.FLASH_ATTENTION, q, k_full, v_full)),
                ("torch-cudnn", lambda: sdpa(SDPBackend.CUDNN_ATTENTION, q, k_full, v_full)),
            ]
            if flash_attn_with_kvcache is not None:
                q_bshd, k_bshd, v_bshd = (t.transpose(1, 2).contiguous() for t in (q, k, v))
                methods.append(("flash-attn-kvcache", lambda: flash_attn_with_kvcache(q_bshd, k_bshd, v_bshd)))
            kv_bytes = 2 * k.numel() * k.element_size()
            for name, fn in methods:
                row = dict(impl=name, b=a.b, h=a.h, kv_heads=a.kv_heads, nq=a.nq, n=n, d=d, dtype=a.dtype, device=dev)
                try:
                    ms = bench(fn)
                    row.update(ms=round(ms, 5), gbps=round(kv_bytes / ms / 1e6, 1))
                except Exception as e:  # a backend may not support a shape
                    row.update(error=f"{type(e).__name__}: {e}"[:200])
                print(json.dumps(row), flush=True)


def sdpa(backend, q, k, v):
    with sdpa_kernel(backend):
        return F.scaled_dot_product_attention(q, k, v)


if __name__ == "__main__":
    main()
