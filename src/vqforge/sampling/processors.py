"""Small pure logits processors: each takes logits (B, V) and returns new logits, never mutating its input.

They compose in the order of :func:`process_logits`: vocabulary restriction, guidance, temperature, top-k,
top-p. Every function keeps fixed shapes (no data-dependent sizes), so a compiled decode step may include them.
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingSettings:
    """How a token is drawn from the transformer's logits.

    ``top_k``/``top_p``: ``None`` (or 0 / 1.0) disables them. ``cfg_scale``: classifier-free guidance
    strength (0 disables it; ``cond + s * (cond - uncond)``). ``greedy``: take the argmax instead of sampling.
    ``top_p_needs_top_k``: the original only filtered top-p when a top-k was given; set it to reproduce that.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    cfg_scale: float = 0.0
    greedy: bool = False
    top_p_needs_top_k: bool = False

    def __post_init__(self):
        if not 0 < self.temperature < math.inf:
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.cfg_scale < math.inf:  # inf / nan: logits of inf - inf, and settings.json not JSON
            raise ValueError(f"cfg_scale must be a finite number >= 0, got {self.cfg_scale}")


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Divide by the temperature (t < 1 sharpens, t > 1 flattens)."""
    return logits if t == 1.0 else logits / t


def top_k(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep logits >= the k-th largest of each row (ties with it survive, as in the original); others -inf."""
    if not k or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability mass reaches ``p``.

    The most likely token always survives. Works on logits already filtered by :func:`top_k` (their -inf
    entries carry no mass).
    """
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    # drop a token when the mass *before* it already exceeds p (so the token crossing p is kept)
    drop_sorted = (cum - sorted_logits.softmax(dim=-1)) > p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def restrict_vocab(logits: torch.Tensor, n: int | None) -> torch.Tensor:
    """Forbid token ids >= ``n`` (e.g. condition codes sharing the vocabulary with image codes)."""
    if n is None or n >= logits.shape[-1]:
        return logits
    allowed = torch.arange(logits.shape[-1], device=logits.device) < n  # (V,)
    return logits.masked_fill(~allowed, float("-inf"))


def classifier_free_guidance(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """``cond + scale * (cond - uncond)``: scale 0 gives the conditional logits unchanged."""
    return cond if scale == 0 else cond + scale * (cond - uncond)


def split_guidance(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Combine a guided batch: rows [0, B) conditional, rows [B, 2B) unconditional -> (B, V)."""
    cond, uncond = logits.chunk(2, dim=0)
    return classifier_free_guidance(cond, uncond, scale)


def process_logits(logits: torch.Tensor, settings: SamplingSettings, n_vocab: int | None = None) -> torch.Tensor:
    """Apply every processor of ``settings`` to (B, V) logits (guidance must already be combined)."""
    logits = restrict_vocab(logits, n_vocab)
    logits = temperature(logits, settings.temperature)
    logits = top_k(logits, settings.top_k)
    # NOTE: with top_p_needs_top_k the original's behaviour is kept: top-p only acts together with top-k.
    if settings.top_k or not settings.top_p_needs_top_k:
        logits = top_p(logits, settings.top_p)
    return logits


def pick(logits: torch.Tensor, greedy: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from processed logits (B, V) -> (B, 1): argmax, or a multinomial sample."""
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    probs = logits.float().softmax(dim=-1)  # (B, V)
    # argmax(p / E) with E ~ Exp(1) draws index i with probability p_i (the exponential race; what
    # torch.multinomial does for one sample, without its input checks, which cost more than the draw)
    race = torch.empty_like(probs).exponential_(generator=generator)
    return (probs / race).argmax(dim=-1, keepdim=True)  # (B, 1)


def next_token(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None = None,
               n_vocab: int | None = None, guided: bool = False) -> torch.Tensor:
    """Full pipeline for one step: guidance (if ``guided``), processors, pick. Returns (B, 1) token ids.

    With ``guided`` the logits hold 2B rows (conditional then unconditional) and the result has B rows.
    """
    if guided:
        logits = split_guidance(logits, settings.cfg_scale)
    return pick(process_logits(logits, settings, n_vocab), settings.greedy, generator)
