"""Time one decode step of the CPU benchmark GPT (8 x 512, 26M, random weights) along variant paths (issue 26).

Positions 128-255 after a 128-token prefill, batch 1 and 4; median and fastest step, and the first call (compile
time where there is one). The variants the docs/benchmarks.md issue-26 section reports as tried and not taken:

    fp32             eager fp32 (vqforge's exact path)
    int8 / int4      the quantised copies on ATen's CPU kernels (the default path on a CPU without native bf16)
    int8math         int8, with attention for the one-token query as two matmuls and a softmax instead of SDPA
    int8compiled     int8, the step through torch.compile (ATen's int8 kernel inside the graph)
    int8dqcompiled   int8 dequantised inside the compiled step (inductor generates the product)

    PYTHONPATH=src python bench/decode_variants.py [--threads 2] [VARIANT ...]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from vqforge.models.gpt import GPT, GPTConfig
from vqforge.sampling.cpu import swap_linears
from vqforge.sampling.generate import decode_step
from vqforge.sampling.quantized import quantized, quantized_layer

VARIANTS = ("fp32", "int8", "int4", "int8math", "int8compiled", "int8dqcompiled")
_SDPA = F.scaled_dot_product_attention


def _math_sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
    """SDPA, except a one-token query over every slot: softmax(q k^T / sqrt(d)) v by two matmuls."""
    if q.shape[-2] == 1 and attn_mask is None and not is_causal:
        att = torch.matmul(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)  # (B, nh, 1, keys)
        return torch.matmul(att.softmax(-1), v)  # (B, nh, 1, hs)
    return _SDPA(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kw)


def time_steps(model: GPT, step, batch: int) -> tuple[float, float, float]:
    """(median, fastest, first) seconds of a decode step at positions 128..255 after a 128-token prefill."""
    with torch.inference_mode():
        cache = model.new_cache(batch, 257, dtype=torch.float32)
        tok = torch.zeros(batch, 1, dtype=torch.long)
        model(tok.expand(batch, 128), torch.arange(128), cache)
        t0 = time.perf_counter()
        step(model, tok, torch.tensor([128]), cache)
        first = time.perf_counter() - t0
        times = []
        for p in range(129, 257):
            t = time.perf_counter()
            step(model, tok, torch.tensor([p]), cache)
            times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], times[0], first


def variant(gpt: GPT, name: str):
    """(model, step) for ``name``; sets or restores the global SDPA."""
    F.scaled_dot_product_attention = _math_sdpa if name == "int8math" else _SDPA
    if name == "fp32":
        return gpt, decode_step
    if name == "int8dqcompiled":
        with torch.no_grad():
            model = swap_linears(gpt, quantized_layer("int8", kernel=False))
    else:
        model = quantized(gpt, "int4" if name == "int4" else "int8")
    return model, torch.compile(decode_step, fullgraph=True) if name.endswith("compiled") else decode_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=1024, block_size=257, n_layer=8, n_head=8, n_embd=512)).eval()
    for name in args.variants:
        model, step = variant(gpt, name)
        for batch in (1, 4):
            med, fast, first = time_steps(model, step, batch)
            print(f"{name:16s} batch {batch}: median {1e3 * med:.2f} ms, fastest {1e3 * fast:.2f} ms, "
                  f"first call {first:.1f} s", flush=True)
    F.scaled_dot_product_attention = _SDPA


if __name__ == "__main__":
    main()
