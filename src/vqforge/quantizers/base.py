"""The quantizer interface: one fixed return type for every kind, and the config every kind's config extends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from ..config import ConfigError, Variants
from .legacy import upgrade_flat_record


class QuantizerOutput(NamedTuple):
    """What every quantizer returns.

    quantized: (B, D, h, w) latents after quantisation, with straight-through gradients in training.
    indices:   (B, h, w) int64 codebook ids.
    losses:    named scalar losses; ``losses["loss"]`` is the total to add to the training objective
               (the original's ``emb_loss`` / ``qloss``), the other entries are its parts for logging.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    losses: dict[str, torch.Tensor]


class Quantizer(nn.Module):
    """Base class: maps continuous latents (B, D, h, w) to codebook entries.

    Subclasses implement :meth:`forward` and :meth:`embed_indices` and set :attr:`n_codes`. A quantizer that
    draws its codes at a temperature (gumbel) sets :attr:`temperature`; a trainer may schedule it.
    """

    n_codes: int
    #: the sampling temperature of a quantizer that has one (None: it has none)
    temperature: float | None = None

    def forward(self, z: torch.Tensor) -> QuantizerOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def embed_indices(self, indices: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """Codebook latents (B, D, h, w) for integer ids (B, h, w)."""
        raise NotImplementedError


def projections(dim: int, code_dim: int) -> tuple[nn.Module, nn.Module]:
    """1x1 convolutions into and out of a ``code_dim``-channel code space (identities when it is ``dim``)."""
    if code_dim == dim:
        return nn.Identity(), nn.Identity()
    return nn.Conv2d(dim, code_dim, 1), nn.Conv2d(code_dim, dim, 1)


def perplexity(indices: torch.Tensor, n_codes: int) -> torch.Tensor:
    """exp(entropy) of the empirical code distribution of ``indices`` (any shape)."""
    counts = torch.bincount(indices.flatten(), minlength=n_codes).float()
    p = counts / counts.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())


@dataclass(frozen=True)
class QuantizerConfig:
    """The settings every quantizer kind has; each kind's config (beside its module) extends it, names itself
    in ``kind`` and builds its quantizer. A field annotated ``QuantizerConfig`` (``VQGANConfig.quantizer``)
    holds any registered kind, chosen in YAML by ``kind:`` (default ``vq``, so that the original's configs
    load unchanged); see :mod:`vqforge.quantizers.registry`.

    n_embed: codebook size. embed_dim: code dimension (channels after ``quant_conv``).
    """

    variants: ClassVar[Variants] = Variants("quantizer kind", tag="kind", default="vq", upgrade=upgrade_flat_record)
    kind: ClassVar[str]

    n_embed: int = 1024
    embed_dim: int = 256

    def __post_init__(self) -> None:
        if type(self) is QuantizerConfig:
            raise TypeError("QuantizerConfig is the base of the quantizer kinds' configs; build one kind's config "
                            f"(kinds: {', '.join(self.variants.names())}), e.g. VQConfig(n_embed=1024, embed_dim=256)")
        for name in ("n_embed", "embed_dim"):
            if getattr(self, name) < 1:
                raise ConfigError.at(name, f"must be >= 1, got {getattr(self, name)}")

    @property
    def n_codes(self) -> int:
        """The codebook size: what code outside the configs calls it (``n_embed`` is the YAML key, the
        original's name, kept so that its configs and every saved model read unchanged)."""
        return self.n_embed

    def build(self, in_channels: int) -> Quantizer:  # pragma: no cover - interface
        """The quantizer for latents with ``in_channels`` channels."""
        raise NotImplementedError
