"""Correctness checks that belong with a speed run (issue 15): the fast paths must still compute the right thing.

* :func:`compiled_decode_check`: greedy tokens of the compiled decode step against the eager bf16 path on a
  trained-size grid (16 x 16 tokens). Identical, or the first difference falls on a near-tie of the eager
  logits (top-2 margin under ``tie_margin``), which rounding may break either way.
* :func:`bf16_training_check`: the same model, data and steps trained in fp32 and with the bf16 levers; the
  losses must stay close (relative difference per step) and both runs must learn (final < first).
* :func:`sliding_window_check`: sliding-window sampling of a grid larger than the window with the default
  (on CUDA: compiled) decode path runs through, without falling back to eager.

Each returns a JSON-ready dict with ``ok`` and the numbers behind it; none raises for a failed check.
"""

from __future__ import annotations

import time
import warnings

import torch
import torch.nn.functional as F

from ..devices import autocast, resolve_precision
from ..models.gpt import GPT
from ..sampling.generate import DecodeOptions, DecodeSession
from ..sampling.processors import SamplingSettings
from ..sampling.sliding import sample_sliding
from ..train.transformer import param_groups
from .gpt_rows import build_gpts
from .rows import GPTSpec, VQGANSpec


def _greedy(model: GPT, cond: torch.Tensor, steps: int, decoding: DecodeOptions) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Greedy tokens (B, steps), the top-2 margin of each step's logits (B, steps), and the session's mode."""
    sess = DecodeSession(model, cond.shape[0], cond.shape[1] + steps - 1, decoding)
    logits = sess.prefill(cond)
    toks, margins = [], []
    for n in range(steps):
        top2 = logits.float().topk(2, dim=-1).values  # (B, 2)
        margins.append(top2[:, 0] - top2[:, 1])
        tok = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        toks.append(tok)
        if n + 1 < steps:
            logits = sess.step(tok, cond.shape[1] + n)
    return torch.cat(toks, 1), torch.stack(margins, 1), sess.mode


@torch.inference_mode()
def compiled_decode_check(spec: GPTSpec, device: torch.device, tie_margin: float = 0.05) -> dict:
    """Greedy decoding of ``spec.tokens`` tokens at the default precision (bf16 on CUDA): the compiled step vs
    the eager path, same weights."""
    t0 = time.perf_counter()
    _, gpt = build_gpts(spec, device, with_original=False)
    gpt.eval()
    cond = torch.zeros(spec.batch, 1, dtype=torch.long, device=device)
    eager, margins, eager_mode = _greedy(gpt, cond, spec.tokens, DecodeOptions(compile=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled, _, compiled_mode = _greedy(gpt, cond, spec.tokens, DecodeOptions(compile=True))
    same = bool(torch.equal(eager, compiled))
    res = {"check": "compiled_decode", "model": spec.label(), "grid_tokens": spec.tokens, "batch": spec.batch,
           "eager_mode": eager_mode, "compiled_mode": compiled_mode, "identical": same,
           "warnings": [str(w.message)[:200] for w in caught]}
    if not same:
        diff = (eager != compiled).float().argmax(dim=1)  # first differing step per sequence
        rows = (eager != compiled).any(dim=1)
        first = [int(d) for d, r in zip(diff, rows) if r]
        tie = [float(margins[b, int(diff[b])]) for b in range(eager.shape[0]) if rows[b]]
        res.update(first_difference=first, eager_margin_there=[round(m, 4) for m in tie],
                   near_tie=all(m < tie_margin for m in tie))
    # on CUDA the two must really be different paths (elsewhere compile=True may legitimately change nothing)
    res["ok"] = bool((same or res["near_tie"]) and not res["warnings"]
                     and (device.type != "cuda" or compiled_mode != eager_mode))
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    return res


def _train_losses(gpt: GPT, seq: torch.Tensor, steps: int, dtype: torch.dtype, fused: bool) -> list[float]:
    """Train ``gpt`` on the fixed batch ``seq`` (B, T+1) for ``steps`` AdamW steps; the loss of each step."""
    device = seq.device
    opt = torch.optim.AdamW(param_groups(gpt, 0.01), lr=3e-4, betas=(0.9, 0.95), **({"fused": True} if fused else {}))
    gpt.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            logits = gpt(seq[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def bf16_training_check(spec: GPTSpec, device: torch.device, steps: int = 30, rtol: float = 0.05) -> dict:
    """GPT training from the same weights on the same batch: fp32 vs bf16 autocast + fused AdamW."""
    t0 = time.perf_counter()
    _, gpt = build_gpts(spec, device, with_original=False)
    twin = GPT(gpt.config).to(device)
    twin.load_state_dict(gpt.state_dict())
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(0, spec.vocab, (spec.batch, spec.tokens + 1), generator=g).to(device)
    fp32 = _train_losses(gpt, seq, steps, torch.float32, fused=False)
    bf16_dtype = resolve_precision("auto", device)
    bf16 = _train_losses(twin, seq, steps, bf16_dtype, fused=True)
    rel = [abs(a - b) / abs(a) for a, b in zip(fp32, bf16)]
    res = {"check": "bf16_training", "model": spec.label(), "steps": steps, "batch": spec.batch,
           "fast_dtype": str(bf16_dtype).replace("torch.", ""), "fp32_losses": [round(v, 4) for v in fp32],
           "bf16_losses": [round(v, 4) for v in bf16], "max_rel_diff": round(max(rel), 4), "rtol": rtol,
           "both_learn": fp32[-1] < 0.8 * fp32[0] and bf16[-1] < 0.8 * bf16[0]}
    res["ok"] = res["max_rel_diff"] <= rtol and res["both_learn"]
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    return res


@torch.inference_mode()
def sliding_window_check(spec: GPTSpec, device: torch.device, grid_hw: tuple[int, int] = (16, 24),
                         window_hw: tuple[int, int] = (16, 16)) -> dict:
    """Sliding-window sampling of ``grid_hw`` tokens with a ``window_hw`` window on the default decode path."""
    t0 = time.perf_counter()
    _, gpt = build_gpts(spec, device, with_original=False)
    gpt.eval()
    cond = torch.zeros(spec.batch, 1, dtype=torch.long, device=device)
    mode = DecodeSession(gpt, spec.batch, 1, DecodeOptions()).mode
    gen = torch.Generator(device=device).manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        out = sample_sliding(gpt, cond, grid_hw, window_hw, SamplingSettings(top_k=spec.top_k), generator=gen)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        secs = time.perf_counter() - t
    n = grid_hw[0] * grid_hw[1]
    res = {"check": "sliding_window", "model": spec.label(), "grid": list(grid_hw), "window": list(window_hw),
           "mode": mode, "shape_ok": tuple(out.shape) == (spec.batch, *grid_hw),
           "tokens_in_vocab": bool(((out >= 0) & (out < spec.vocab)).all()),
           "tok_per_s": round(spec.batch * n / secs, 1), "warnings": [str(w.message)[:200] for w in caught]}
    res["ok"] = res["shape_ok"] and res["tokens_in_vocab"] and not res["warnings"]
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    return res


def run_checks(device: torch.device, quick: bool = False, log=print) -> list[dict]:
    """The three checks at trained sizes (``quick``: toy sizes), each guarded so one failure keeps the others."""
    from .suites import CPU_GPT, QUICK_GPT

    base = QUICK_GPT if quick else CPU_GPT  # 8 x 512: a trained-size grid (256 tokens), compiles quickly
    tokens = 16 if quick else 256
    jobs = [
        ("compiled_decode", lambda: compiled_decode_check(GPTSpec(**{**base.__dict__, "batch": 2, "tokens": tokens}),
                                                          device)),
        ("bf16_training", lambda: bf16_training_check(GPTSpec(**{**base.__dict__, "batch": 8}), device,
                                                      steps=10 if quick else 30)),
        ("sliding_window", lambda: sliding_window_check(
            GPTSpec(**{**base.__dict__, "batch": 1}), device,
            grid_hw=(4, 6) if quick else (16, 24), window_hw=(4, 4) if quick else (16, 16))),
    ]
    results = []
    for name, job in jobs:
        try:
            res = job()
        except Exception as e:  # report, and go on with the next check
            res = {"check": name, "ok": False, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        log(f"check {name}: {'ok' if res['ok'] else 'FAILED'} "
            + ", ".join(f"{k}={v}" for k, v in res.items() if k not in ("check", "ok", "fp32_losses", "bf16_losses")))
        results.append(res)
    return results
