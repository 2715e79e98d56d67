#!/usr/bin/env python3
"""The PyTorch side of the model benchmarks (benchmarks/models_gpu.sh, benchmarks/models_cpu.sh):
Hugging Face transformers with SDPA attention on the shapes our two models run, random weights,
batch 1, on the same card (or the same CPU cores) and in the same call as `distr-llama bench` and
`distr-vit bench`.

- SmolLM2-135M (`LlamaForCausalLM` from the config.json `distr-llama export` writes): prefill
  tokens/s of one forward pass with a KV cache at each context length, and `generate` decode
  tokens/s at the end of each context (greedy, 32 new tokens; the time of one new token, which
  is the prefill, subtracted).
- DINOv2-S/14 (`Dinov2Model`, 384 wide, 12 layers, 6 heads, patch 14): latency of one forward
  pass at each side (224, 518, 1036 px: 257, 1370, 5477 tokens; the position table is
  interpolated as the model does for any size).

Times are CUDA-event milliseconds on the GPU and wall-clock milliseconds on the CPU (`--device
cpu`, `--threads` intra-op threads), best and median of the repeats after warm-up; our benches
report the best (llama) and median (ViT) of theirs. Prints one JSON object per line.

Usage: python3 hf_models.py --llama-config DIR/config.json [--dtype bfloat16] [--device cuda|cpu]
                            [--threads N] [--context 512,2048,8192] [--sizes 224,518,1036]
                            [--no-decode]
"""
import argparse
import json
import time

import torch
from transformers import Dinov2Config, Dinov2Model, LlamaConfig, LlamaForCausalLM

DECODE_TOKENS = 32


DEVICE = "cuda"


def elapsed_ms(fn):
    """Milliseconds of one call of `fn`: CUDA events on the GPU, the wall clock on the CPU."""
    if DEVICE == "cpu":
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def timed(fn, warmup, repeats):
    """Best and median milliseconds of `fn` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = sorted(elapsed_ms(fn) for _ in range(repeats))
    return times[0], times[len(times) // 2]


def llama(config_path, dtype, contexts, repeats, row, decode=True):
    with open(config_path) as f:
        config = LlamaConfig.from_dict(json.load(f))
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(DEVICE, dtype).eval()
    for context in contexts:
        ids = torch.randint(0, config.vocab_size, (1, context), device=DEVICE)
        with torch.inference_mode():
            best, median = timed(lambda: model(ids, use_cache=True), 2, repeats)
        print(json.dumps(dict(row, model="SmolLM2-135M", phase="prefill", tokens=context, best_ms=round(best, 3),
                              median_ms=round(median, 3), tokens_per_s=round(context / best * 1e3, 1))), flush=True)
        if not decode:
            continue
        prompt = ids[:, : context - DECODE_TOKENS]

        def generate(new):
            return lambda: model.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                          pad_token_id=0)

        with torch.inference_mode():
            one, _ = timed(generate(1), 1, repeats)
            full, _ = timed(generate(DECODE_TOKENS), 1, repeats)
        steps = DECODE_TOKENS - 1
        print(json.dumps(dict(row, model="SmolLM2-135M", phase="decode", context=context, steps=steps,
                              ms_per_token=round((full - one) / steps, 3),
                              tokens_per_s=round(steps / (full - one) * 1e3, 1))), flush=True)
    del model
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def dinov2(dtype, sizes, repeats, row):
    config = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                          patch_size=14, image_size=518, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = Dinov2Model(config).to(DEVICE, dtype).eval()
    for size in sizes:
        pixels = torch.randn(1, 3, size, size, device=DEVICE, dtype=dtype)
        with torch.inference_mode():
            best, median = timed(lambda: model(pixel_values=pixels), 5, repeats)
        print(json.dumps(dict(row, model="DINOv2-S/14", size=size, tokens=1 + (size // 14) ** 2,
                              best_ms=round(best, 3), median_ms=round(median, 3))), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llama-config", required=True)
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--context", default="512,2048,8192", help="Llama contexts; empty to skip the Llama")
    p.add_argument("--sizes", default="224,518,1036", help="ViT sides; empty to skip the ViT")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--no-decode", action="store_true", help="time the Llama's prefill only")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads on the CPU (default: torch's)")
    a = p.parse_args()
    import transformers
    global DEVICE
    DEVICE = a.device
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    device = torch.cuda.get_device_name() if DEVICE == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    row = dict(impl="transformers-sdpa", dtype=a.dtype, device=device, torch=torch.__version__,
               transformers=transformers.__version__)
    if a.sizes:
        dinov2(dtype, [int(s) for s in a.sizes.split(",")], a.repeats, row)
    if a.context:
        llama(a.llama_config, dtype, [int(c) for c in a.context.split(",")], max(2, a.repeats // 3), row, not a.no_decode)


if __name__ == "__main__":
    main()
