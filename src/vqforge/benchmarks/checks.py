"""Correctness checks that belong with a speed run (issue 15): the fast paths must still compute the right thing.

* :func:`compiled_decode_check`: greedy decoding on a trained-size grid (16 x 16 tokens), the compiled decode
  step (CUDA graphs, bf16) in lockstep with the eager path at bf16: the logits agree within bf16 rounding and
  the argmax agrees at every step but near-ties (top-2 margin within the logits' difference), so the compiled
  path's greedy tokens are the eager path's. Where the fast path is weight-only int8 / int4 (a CPU's ``auto``),
  the eager path runs the same rounded weights dequantised, so the two differ by the kernels' bf16 inputs only.
* :func:`bf16_training_check`: the same model, data and steps trained in fp32 and with the bf16 levers; the
  losses must stay close (difference per step within 5% of the first loss) and both runs must learn (final
  under half the first).
* :func:`sliding_window_check`: sliding-window sampling of a grid larger than the window with the default
  (on CUDA: compiled) decode path runs through, without falling back to eager.

Each returns a JSON-ready dict with ``ok`` and the numbers behind it; none raises for a failed check.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace

import torch
import torch.nn.functional as F

from ..devices import autocast, resolve_precision
from ..models.gpt import GPT
from ..sampling.generate import DecodeOptions, DecodeSession
from ..sampling.processors import SamplingSettings
from ..sampling.quantized import QUANTISED, dequantised
from ..sampling.sliding import sample_sliding
from ..train.transformer import param_groups
from .gpt_rows import build_gpts
from .rows import GPTSpec


def _fallbacks(caught) -> list[str]:
    """Warnings that say a compiled path gave up and ran eagerly (other compiler chatter is not a failure)."""
    words = ("failed", "eagerly", "falling back", "fallback")
    return [str(w.message)[:200] for w in caught if any(k in str(w.message).lower() for k in words)]


def _lockstep(model: GPT, cond: torch.Tensor, steps: int, dtype: torch.dtype) -> dict:
    """Greedy decoding on the eager path and the fast (on CUDA: compiled) path side by side, both fed the eager
    path's tokens. Per step: the logits' relative difference, and whether the two argmaxes agree; a step whose
    eager top-2 margin is within twice the logits' largest difference is a near-tie (rounding may go either way).
    If every step agrees, the fast path's own greedy run makes exactly the eager tokens."""
    B, Tc = cond.shape
    fast = DecodeSession(model, B, Tc + steps - 1, DecodeOptions(precision="auto"))
    # a weight-only quantised fast path is held against its own rounded weights in fp32 (same precision), not
    # against the fp32 model: the quantisation error is its own test's (tests/test_quantized.py)
    precision = fast.mode.rsplit("-", 1)[1]
    reference = dequantised(model, precision) if precision in QUANTISED else model
    eager = DecodeSession(reference, B, Tc + steps - 1, DecodeOptions(precision="fp32"))
    with autocast(cond.device, dtype):  # the eager path at the fast one's precision
        le = eager.prefill(cond)
    lf = fast.prefill(cond)
    rel, disagree, ties, identical = [], [], 0, True
    for n in range(steps):
        diff = (lf.float() - le.float()).abs()  # (B, V)
        rel.append(float(diff.norm() / le.float().norm()))
        top2 = le.float().topk(2, dim=-1).values  # (B, 2)
        tie = (top2[:, 0] - top2[:, 1]) <= 2 * diff.max(dim=-1).values
        ties += int(tie.sum())
        differ = le.argmax(-1) != lf.argmax(-1)
        identical &= not bool(differ.any())
        bad = differ & ~tie
        if bad.any():
            disagree.append(n)
        tok = le.argmax(-1, keepdim=True)  # (B, 1)
        if n + 1 < steps:
            with autocast(cond.device, dtype):
                le = eager.step(tok, Tc + n)
            lf = fast.step(tok, Tc + n)
    return {"eager_mode": eager.mode + (f" on the {precision} weights dequantised" if reference is not model else "")
            + (" + bf16 autocast" if dtype == torch.bfloat16 else ""),
            "fast_mode": fast.mode, "max_rel_logit_diff": round(max(rel), 5), "near_ties": ties,
            "steps_disagreeing": disagree, "identical_greedy": identical}


def compiled_decode_check(spec: GPTSpec, device: torch.device, rtol: float = 2e-2) -> dict:
    """Greedy decoding of ``spec.tokens`` tokens (a trained-size grid): the fast decode step (on CUDA the
    compiled, CUDA-graph bf16 step) against the eager path at the same precision, same weights."""
    t0 = time.perf_counter()
    _, gpt = build_gpts(spec, device, with_original=False)  # outside inference mode: packing versions weights
    gpt.eval()
    cond = torch.zeros(spec.batch, 1, dtype=torch.long, device=device)
    dtype = resolve_precision("auto", device) if device.type == "cuda" else torch.float32
    with warnings.catch_warnings(record=True) as caught, torch.inference_mode():
        warnings.simplefilter("always")
        res = {"check": "compiled_decode", "model": spec.label(), "grid_tokens": spec.tokens, "batch": spec.batch,
               **_lockstep(gpt, cond, spec.tokens, dtype), "rtol": rtol}
    res["fallback_warnings"] = _fallbacks(caught)
    # on CUDA the compiled path must really have run (on a CPU the fast path is the packed one)
    res["ok"] = bool(not res["steps_disagreeing"] and res["max_rel_logit_diff"] <= rtol
                     and not res["fallback_warnings"] and (device.type != "cuda" or "compiled" in res["fast_mode"]))
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    return res


def _train_losses(gpt: GPT, seq: torch.Tensor, steps: int, dtype: torch.dtype, fused: bool, lr: float) -> list[float]:
    """Train ``gpt`` on the fixed batch ``seq`` (B, T+1) for ``steps`` AdamW steps; the loss of each step."""
    device = seq.device
    opt = torch.optim.AdamW(param_groups(gpt, 0.01), lr=lr, betas=(0.9, 0.95), **({"fused": True} if fused else {}))
    gpt.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            logits = gpt(seq[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def learnable_tokens(batch: int, length: int, vocab: int, seed: int = 1) -> torch.Tensor:
    """(batch, length) sequences with a fixed successor rule (next = (7 * token + 3) mod vocab) from random
    starts: a pattern a GPT learns in a few dozen steps, so that "both runs learn" can be asserted quickly."""
    g = torch.Generator().manual_seed(seed)
    seq = torch.empty(batch, length, dtype=torch.long)
    seq[:, 0] = torch.randint(0, vocab, (batch,), generator=g)
    for t in range(1, length):
        seq[:, t] = (7 * seq[:, t - 1] + 3) % vocab
    return seq


def bf16_training_check(spec: GPTSpec, device: torch.device, steps: int = 30, tol: float = 0.05,
                        lr: float = 1e-3) -> dict:
    """GPT training from the same weights on the same batch: fp32 vs bf16 autocast + fused AdamW.

    ok: at every step |loss_bf16 - loss_fp32| <= ``tol`` x the first fp32 loss, and both runs learn (final loss
    under half the first)."""
    t0 = time.perf_counter()
    _, gpt = build_gpts(spec, device, with_original=False)
    twin = GPT(gpt.config).to(device)
    twin.load_state_dict(gpt.state_dict())
    seq = learnable_tokens(spec.batch, spec.tokens + 1, spec.vocab).to(device)
    fp32 = _train_losses(gpt, seq, steps, torch.float32, fused=False, lr=lr)
    fast_dtype = resolve_precision("auto", device)
    fast = _train_losses(twin, seq, steps, fast_dtype, fused=True, lr=lr)
    diff = max(abs(a - b) for a, b in zip(fp32, fast)) / fp32[0]
    res = {"check": "bf16_training", "model": spec.label(), "steps": steps, "batch": spec.batch,
           "fast_dtype": str(fast_dtype).replace("torch.", ""), "fp32_losses": [round(v, 4) for v in fp32],
           "bf16_losses": [round(v, 4) for v in fast], "max_diff_over_first_loss": round(diff, 4), "tol": tol,
           "first_final_fp32": [round(fp32[0], 3), round(fp32[-1], 3)],
           "first_final_bf16": [round(fast[0], 3), round(fast[-1], 3)],
           "both_learn": fp32[-1] < 0.5 * fp32[0] and fast[-1] < 0.5 * fast[0]}
    res["ok"] = diff <= tol and res["both_learn"]
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    return res


def sliding_window_check(spec: GPTSpec, device: torch.device, grid_hw: tuple[int, int] = (16, 24),
                         window_hw: tuple[int, int] = (16, 16)) -> dict:
    """Sliding-window sampling of ``grid_hw`` tokens with a ``window_hw`` window on the default decode path."""
    t0 = time.perf_counter()
    _, gpt = build_gpts(spec, device, with_original=False)
    gpt.eval()
    cond = torch.zeros(spec.batch, 1, dtype=torch.long, device=device)
    mode = DecodeSession(gpt, spec.batch, 1).mode
    gen = torch.Generator(device=device).manual_seed(0)
    with warnings.catch_warnings(record=True) as caught, torch.inference_mode():
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
           "tok_per_s": round(spec.batch * n / secs, 1), "fallback_warnings": _fallbacks(caught)}
    res["ok"] = res["shape_ok"] and res["tokens_in_vocab"] and not res["fallback_warnings"]
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    return res


def run_checks(device: torch.device, quick: bool = False, log=print) -> list[dict]:
    """The three checks at trained sizes (``quick``: toy sizes), each guarded so one failure keeps the others."""
    from .suites import CPU_GPT, QUICK_GPT

    base = QUICK_GPT if quick else CPU_GPT  # 8 x 512: a trained-size grid (256 tokens), compiles quickly
    tokens = 16 if quick else 256
    jobs = [
        ("compiled_decode", lambda: compiled_decode_check(replace(base, batch=2, tokens=tokens), device)),
        ("bf16_training", lambda: bf16_training_check(replace(base, batch=8), device, steps=30)),
        ("sliding_window", lambda: sliding_window_check(replace(base, batch=1), device,
                                                        grid_hw=(4, 6) if quick else (16, 24),
                                                        window_hw=(4, 4) if quick else (16, 16))),
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
