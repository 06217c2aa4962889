"""Quantizer configuration and construction by ``kind``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .base import Quantizer
from .gumbel import GumbelQuantizer
from .vq import VectorQuantizer


@dataclass(frozen=True)
class QuantizerConfig:
    """Which quantizer a VQGAN uses, and its settings.

    kind: ``vq`` (the original VectorQuantizer2) or ``gumbel`` (GumbelQuantize).
    n_embed: codebook size. embed_dim: code dimension (channels after ``quant_conv``).
    beta: commitment weight (vq). legacy: the original's beta placement (see :class:`VectorQuantizer`).
    kl_weight, temp_init, straight_through: gumbel settings.
    """

    kind: Literal["vq", "gumbel"] = "vq"
    n_embed: int = 1024
    embed_dim: int = 256
    beta: float = 0.25
    legacy: bool = False
    kl_weight: float = 5e-4
    temp_init: float = 1.0
    straight_through: bool = True


def build_quantizer(cfg: QuantizerConfig, in_channels: int) -> Quantizer:
    """Build the quantizer ``cfg.kind`` for latents with ``in_channels`` channels."""
    if cfg.kind == "vq":
        return VectorQuantizer(cfg.n_embed, cfg.embed_dim, beta=cfg.beta, legacy=cfg.legacy)
    if cfg.kind == "gumbel":
        return GumbelQuantizer(in_channels, cfg.embed_dim, cfg.n_embed, straight_through=cfg.straight_through,
                               kl_weight=cfg.kl_weight, temp_init=cfg.temp_init)
    raise ValueError(f"unknown quantizer kind {cfg.kind!r}")
