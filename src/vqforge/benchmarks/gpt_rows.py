"""GPT rows: a training step and cached sampling, original minGPT vs vqforge.

Both GPTs hold the same weights (the original's state dict, minus its ``attn.mask`` buffers, loads into
vqforge's GPT unchanged). Training: cross-entropy on random tokens, AdamW with minGPT's parameter groups.
Sampling: one start token, then ``tokens`` tokens with top-k; the original through ``sample_with_past``,
vqforge through :func:`vqforge.sampling.generate.sample_tokens` on its exact fp32 path and its default path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..devices import resolve_precision
from ..models.gpt import GPT, GPTConfig
from ..sampling.generate import DecodeOptions, decode_path, sample_tokens
from ..sampling.processors import SamplingSettings
from ..train.numerics import adam, autocast
from ..train.transformer import param_groups
from . import original
from .measure import Contestant, held_tensors, is_fused
from .rows import EXACT, EXACT_LEVERS, FAST, FAST_LEVERS, ORIGINAL, GPTSpec, Levers, Row

LR, BETAS, WEIGHT_DECAY = 1e-4, (0.9, 0.95), 0.01  # the original's AdamW settings (lr does not matter here)


def _gpt_config(spec: GPTSpec) -> GPTConfig:
    return GPTConfig(vocab_size=spec.vocab, block_size=spec.block, n_layer=spec.n_layer, n_head=spec.n_head,
                     n_embd=spec.n_embd)


def build_gpts(spec: GPTSpec, device: torch.device, with_original: bool):
    """(original GPT or None, vqforge GPT) with the same weights, built directly on ``device``."""
    with torch.device(device):
        torch.manual_seed(0)
        orig = None
        if with_original:
            orig = original.load().GPT(vocab_size=spec.vocab, block_size=spec.block, n_layer=spec.n_layer,
                                       n_head=spec.n_head, n_embd=spec.n_embd)
        ours = GPT(_gpt_config(spec))
    if orig is not None:
        ours.load_state_dict({k: v for k, v in orig.state_dict().items() if not k.endswith("attn.mask")}, strict=True)
    return orig, ours


@torch.no_grad()
def agreement(orig, ours: GPT, spec: GPTSpec, device: torch.device) -> float | None:
    """max |logits difference| of the two GPTs' full forwards on a short random sequence (eval mode)."""
    if orig is None:
        return None
    idx = _tokens(GPTSpec(vocab=spec.vocab, batch=1, tokens=min(spec.tokens, 32)), device)[0]
    was_o, was_v = orig.training, ours.training
    diff = float((orig.eval()(idx)[0] - ours.eval()(idx)).abs().max())
    orig.train(was_o)
    ours.train(was_v)
    return diff


def _tokens(spec: GPTSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, spec.vocab, (spec.batch, spec.tokens + 1), generator=g).to(device)
    return seq[:, :-1], seq[:, 1:]  # inputs, targets (B, T)


# ============================================================================================ training step
def _train_contestant(name: str, gpt: torch.nn.Module, spec: GPTSpec, device: torch.device, amp: bool,
                      fused: bool, compile: bool = False, trainer: bool = True) -> Contestant:
    """One training step of ``gpt``: vqforge's as its trainer takes it (its precision context, its AdamW with
    minGPT's parameter groups, the loss from fp32 logits), or (``trainer=False``) the original's plain AdamW."""
    idx, targets = _tokens(spec, device)
    groups = param_groups(gpt, WEIGHT_DECAY)
    opt = (adam(groups, LR, BETAS, decoupled=True, fused=fused) if trainer
           else torch.optim.AdamW(groups, lr=LR, betas=BETAS))
    dtype = torch.bfloat16 if amp else torch.float32
    gpt.train()
    net = torch.compile(gpt) if compile else gpt

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            out = net(idx)
        logits = out[0] if isinstance(out, tuple) else out  # the original returns (logits, loss)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        opt.step()

    note = ", ".join(p for p in ("bf16 autocast" if amp else "fp32", "fused AdamW" if is_fused(opt) else "",
                                 "torch.compile" if compile else "") if p)
    return Contestant(name, run, held=lambda: held_tensors(gpt, opt), note=note, warmup=int(compile))


def gpt_train_row(spec: GPTSpec, device: torch.device, with_original: bool, target: str = "",
                  variants: dict[str, Levers] | None = None) -> Row:
    """GPT training step (forward, cross-entropy, backward, AdamW): original vs vqforge fp32 vs vqforge fast
    (``variants``: other lever sets by name; channels_last does not apply to the GPT)."""
    orig, ours = build_gpts(spec, device, with_original)
    row = Row("gpt_train", f"{spec.label()} train step, batch {spec.batch} x {spec.tokens}, AdamW", "tok/s",
              items=spec.batch * spec.tokens, target=target, agreement=agreement(orig, ours, spec, device))
    if orig is not None:
        row.contestants.append(_train_contestant(ORIGINAL, orig, spec, device, amp=False, fused=False,
                                                  trainer=False))
    for name, lv in (variants or {EXACT: EXACT_LEVERS, FAST: FAST_LEVERS}).items():
        gpt = GPT(ours.config).to(device)
        gpt.load_state_dict(ours.state_dict())
        amp = resolve_precision(lv.precision, device) == torch.bfloat16
        row.contestants.append(_train_contestant(name, gpt, spec, device, amp=amp, fused=lv.fused, compile=lv.compile))
    return row


# ============================================================================================ sampling
def vqforge_sample(gpt: GPT, cond: torch.Tensor, steps: int, settings: SamplingSettings, exact: bool,
                   seed: int = 0) -> torch.Tensor:
    """vqforge's sampler on its exact fp32 path (``exact``) or its default path, seeded."""
    g = torch.Generator(device=cond.device).manual_seed(seed)
    return sample_tokens(gpt, cond, steps, settings, generator=g,
                         decoding=DecodeOptions(precision="fp32" if exact else "auto"))


def gpt_sample_row(spec: GPTSpec, device: torch.device, with_original: bool, target: str = "",
                   exact: bool = True) -> Row:
    """Cached sampling of ``spec.tokens`` tokens at batch ``spec.batch``: original ``sample_with_past`` vs
    vqforge's default path (and its exact fp32 path, with ``exact``)."""
    orig, ours = build_gpts(spec, device, with_original)
    ours.eval()
    cond = torch.zeros(spec.batch, 1, dtype=torch.long, device=device)
    settings = SamplingSettings(top_k=spec.top_k)
    row = Row(f"gpt_sample_b{spec.batch}", f"{spec.label()} sampling, batch {spec.batch}, {spec.tokens} tokens, "
                                           f"top-k {spec.top_k}", "tok/s", items=spec.batch * spec.tokens, target=target,
              agreement=agreement(orig, ours, spec, device))
    if orig is not None:
        orig.eval()
        sample_with_past = original.load().sample_with_past

        def run_orig() -> None:
            with torch.no_grad():
                sample_with_past(cond, orig, steps=spec.tokens, temperature=1.0, sample_logits=True, top_k=spec.top_k)

        row.contestants.append(Contestant(ORIGINAL, run_orig, held=lambda: held_tensors(orig),
                                          note="sample_with_past (KV cache), fp32"))
    for fp32 in (True, False) if exact else (False,):
        path = "eager fp32" if fp32 else decode_path(device)
        row.contestants.append(Contestant(
            EXACT if fp32 else FAST, lambda e=fp32: vqforge_sample(ours, cond, spec.tokens, settings, e),
            held=lambda: held_tensors(ours), note=path, warmup=2 if "compiled" in path else 0))
    return row
