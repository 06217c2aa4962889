"""Quantizer configuration and construction by ``kind``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..config import ConfigError
from .base import Quantizer
from .ema import EMAVectorQuantizer
from .fsq import FSQuantizer
from .gumbel import GumbelQuantizer
from .l2 import L2VectorQuantizer
from .vq import VectorQuantizer

#: kinds with a distance-based codebook lookup (the ones k-means init, restart and entropy apply to)
DISTANCE_KINDS = ("vq", "ema", "l2")


@dataclass(frozen=True)
class QuantizerConfig:
    """Which quantizer a VQGAN uses, and its settings. Every field has a default, so the original's
    configs (which set only ``n_embed`` / ``embed_dim``) load unchanged.

    kind: ``vq`` (the original VectorQuantizer2), ``gumbel`` (GumbelQuantize), ``ema`` (EMA codebook
        updates), ``l2`` (factorised l2-normalised codes, ViT-VQGAN / LlamaGen) or ``fsq`` (finite scalar
        quantisation).
    n_embed: codebook size (for fsq it must equal ``prod(fsq_levels)``). embed_dim: code dimension
        (channels after ``quant_conv``).
    beta: commitment weight (vq, ema, l2). legacy: the original's beta placement (vq only, see
        :class:`VectorQuantizer`).
    kl_weight, temp_init, straight_through: gumbel settings.
    ema_decay, ema_eps: EMA decay and Laplace smoothing (ema).
    codebook_dim: lookup dimension of l2 codes (e.g. 8 to 32); 0 means ``embed_dim`` (no projection).
    kmeans_init, kmeans_iters: k-means initialisation of the codebook from the first training batch
        (vq, ema, l2). restart_after: re-seed codes unused for this many training steps (0 = off; vq,
        ema, l2). entropy_weight, entropy_temperature: entropy penalty (0 = off; vq, ema, l2, and fsq, whose
        distances are in level units, so a temperature near 1 suits it).
    fsq_levels: levels per channel (fsq). fsq_data_init: standardise the projected latents on the first
        training batch (fsq with ``embed_dim != len(fsq_levels)``; see :class:`FSQuantizer`).
    """

    kind: Literal["vq", "gumbel", "ema", "l2", "fsq"] = "vq"
    n_embed: int = 1024
    embed_dim: int = 256
    beta: float = 0.25
    legacy: bool = False
    kl_weight: float = 5e-4
    temp_init: float = 1.0
    straight_through: bool = True
    ema_decay: float = 0.99
    ema_eps: float = 1e-5
    codebook_dim: int = 0
    kmeans_init: bool = False
    kmeans_iters: int = 10
    restart_after: int = 0
    entropy_weight: float = 0.0
    entropy_temperature: float = 0.01
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)
    fsq_data_init: bool = False


def _check(cfg: QuantizerConfig) -> None:
    if cfg.kind not in DISTANCE_KINDS:
        used = [name for name, on in (("kmeans_init", cfg.kmeans_init), ("restart_after", cfg.restart_after > 0))
                if on]
        if used:
            raise ConfigError(f"quantizer.{used[0]} applies to kinds {', '.join(DISTANCE_KINDS)}, "
                              f"not {cfg.kind!r}")
    if cfg.kind == "gumbel" and cfg.entropy_weight > 0:
        raise ConfigError("quantizer.entropy_weight applies to kinds vq, ema, l2, fsq, not 'gumbel'")
    if cfg.kind == "fsq":
        n = math.prod(cfg.fsq_levels) if cfg.fsq_levels else 0
        if not cfg.fsq_levels or min(cfg.fsq_levels) < 2:
            raise ConfigError(f"quantizer.fsq_levels must be integers >= 2, got {list(cfg.fsq_levels)}")
        if cfg.fsq_data_init and cfg.embed_dim == len(cfg.fsq_levels):
            raise ConfigError("quantizer.fsq_data_init needs a projection: embed_dim must differ from "
                              "len(fsq_levels)")
        if cfg.n_embed != n:
            raise ConfigError(f"quantizer.n_embed is {cfg.n_embed} but fsq_levels {list(cfg.fsq_levels)} "
                              f"give {n} codes; set quantizer.n_embed={n}")
    if cfg.n_embed < 1 or cfg.embed_dim < 1:
        raise ConfigError("quantizer.n_embed and quantizer.embed_dim must be positive")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ConfigError(f"quantizer.ema_decay must be in [0, 1), got {cfg.ema_decay}")


def build_quantizer(cfg: QuantizerConfig, in_channels: int) -> Quantizer:
    """Build the quantizer ``cfg.kind`` for latents with ``in_channels`` channels."""
    _check(cfg)
    options = dict(kmeans_init=cfg.kmeans_init, kmeans_iters=cfg.kmeans_iters, restart_after=cfg.restart_after,
                   entropy_weight=cfg.entropy_weight, entropy_temperature=cfg.entropy_temperature)
    if cfg.kind == "vq":
        return VectorQuantizer(cfg.n_embed, cfg.embed_dim, beta=cfg.beta, legacy=cfg.legacy, **options)
    if cfg.kind == "gumbel":
        return GumbelQuantizer(in_channels, cfg.embed_dim, cfg.n_embed, straight_through=cfg.straight_through,
                               kl_weight=cfg.kl_weight, temp_init=cfg.temp_init)
    if cfg.kind == "ema":
        return EMAVectorQuantizer(cfg.n_embed, cfg.embed_dim, beta=cfg.beta, decay=cfg.ema_decay,
                                  eps=cfg.ema_eps, **options)
    if cfg.kind == "l2":
        return L2VectorQuantizer(cfg.n_embed, cfg.embed_dim, codebook_dim=cfg.codebook_dim, beta=cfg.beta,
                                 **options)
    if cfg.kind == "fsq":
        return FSQuantizer(cfg.fsq_levels, cfg.embed_dim, data_init=cfg.fsq_data_init,
                           entropy_weight=cfg.entropy_weight, entropy_temperature=cfg.entropy_temperature)
    raise ConfigError(f"unknown quantizer kind {cfg.kind!r}")
