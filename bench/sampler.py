"""Sampler speed: vqforge's cached decoding against the original's ``sample_with_past``, same weights, one process.

The original (``taming-transformers-rom1504==0.0.6``) must be importable; install it in a separate bench
environment only, never into vqforge's (see /work/shared/peers.md)::

    python -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install torch==2.13.0 numpy pyyaml safetensors
    /tmp/benchvenv/bin/pip install --no-deps taming-transformers-rom1504==0.0.6 einops tqdm
    PYTHONPATH=src /tmp/benchvenv/bin/python bench/sampler.py

Both samplers run interleaved (original, vqforge, original, ...) so that load from other processes on a shared
machine hits both alike; the best of the repeats is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # vqforge from this repository


def _shim_transformers() -> None:
    """The original imports ``top_k_top_p_filtering`` from ``transformers``; current releases lack it."""

    def top_k_top_p_filtering(logits, top_k=0, top_p=1.0, filter_value=-float("inf")):
        if top_k > 0:
            kth = torch.topk(logits, min(top_k, logits.size(-1)))[0][..., -1, None]
            logits = logits.masked_fill(logits < kth, filter_value)
        if top_p is not None and top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True)
            cum = F.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
            remove = cum > top_p
            remove[..., 1:] = remove[..., :-1].clone()
            remove[..., 0] = False
            logits = logits.masked_fill(remove.scatter(1, order, remove), filter_value)
        return logits

    mod = types.ModuleType("transformers")
    mod.top_k_top_p_filtering = top_k_top_p_filtering
    sys.modules.setdefault("transformers", mod)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    _shim_transformers()
    from taming.modules.transformer.mingpt import GPT as OrigGPT
    from taming.modules.transformer.mingpt import sample_with_past

    from vqforge.models.gpt import GPT, GPTConfig
    from vqforge.sampling.generate import EXACT, DecodeOptions, DecodeSession, sample_tokens
    from vqforge.sampling.processors import SamplingSettings

    block = args.steps + 1
    torch.manual_seed(0)
    orig = OrigGPT(vocab_size=args.vocab, block_size=block, n_layer=args.layers, n_head=args.heads,
                   n_embd=args.width).eval()
    ours = GPT(GPTConfig(vocab_size=args.vocab, block_size=block, n_layer=args.layers, n_head=args.heads,
                         n_embd=args.width)).eval()
    state = {k: v for k, v in orig.state_dict().items() if not k.endswith("attn.mask")}
    ours.load_state_dict(state, strict=True)  # the same weights in both
    settings = SamplingSettings(top_k=args.top_k)

    def run_orig(cond):
        with torch.no_grad():
            return sample_with_past(cond, orig, steps=args.steps, temperature=1.0, sample_logits=True,
                                    top_k=args.top_k)

    def run_ours(cond, decoding=DecodeOptions()):
        g = torch.Generator().manual_seed(0)
        return sample_tokens(ours, cond, args.steps, settings, generator=g, decoding=decoding)

    def run_exact(cond):
        return run_ours(cond, EXACT)

    # sanity: greedy decoding agrees between the two on the same weights
    cond1 = torch.zeros(1, 1, dtype=torch.long)
    with torch.no_grad():
        a = sample_with_past(cond1, orig, steps=16, sample_logits=False, top_k=args.top_k)
    b = sample_tokens(ours, cond1, 16, SamplingSettings(greedy=True), decoding=EXACT)
    agree = bool(torch.equal(a, b))
    fast_mode = DecodeSession(ours, 1, 2).mode

    print(f"device: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; GPT {args.layers}x{args.width} vocab {args.vocab} block {block}, "
          f"{args.steps} tokens, top-k {args.top_k}; greedy fp32 outputs identical: {agree}; fast path: {fast_mode}",
          flush=True)
    runs = (("original", run_orig), ("vqforge fp32", run_exact), ("vqforge fast", run_ours))
    results = []
    for B in args.batch_sizes:
        cond = torch.zeros(B, 1, dtype=torch.long)
        for _, fn in runs:
            fn(cond)  # warm-up
        best = {name: float("inf") for name, _ in runs}
        for _ in range(args.repeats):
            for name, fn in runs:  # interleaved, so that load from other processes hits all alike
                t = time.perf_counter()
                fn(cond)
                best[name] = min(best[name], time.perf_counter() - t)
        tok = {k: B * args.steps / v for k, v in best.items()}
        results.append((B, tok))
        print(f"batch {B}: " + ", ".join(f"{k} {v:.1f} tok/s" for k, v in tok.items()), flush=True)
    print(f"\n| batch | original `sample_with_past` (tok/s) | vqforge fp32 exact (tok/s) | ratio | "
          f"vqforge fast, {fast_mode} (tok/s) | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for B, tok in results:
        o, e, f = tok["original"], tok["vqforge fp32"], tok["vqforge fast"]
        print(f"| {B} | {o:.1f} | {e:.1f} | {e / o:.2f}x | {f:.1f} | {f / o:.2f}x |")


if __name__ == "__main__":
    main()
