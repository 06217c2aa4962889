"""Gumbel-softmax quantizer (``GumbelQuantize`` in Taming Transformers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import Quantizer, QuantizerConfig, QuantizerOutput


class GumbelQuantizer(Quantizer):
    """Predicts logits over codes with a 1x1 conv and mixes codebook entries by a gumbel-softmax.

    Training: gumbel-softmax with :attr:`temperature` (hard one-hot with straight-through gradients when
    ``straight_through``) plus a KL term to the uniform prior weighted by ``kl_weight``.
    Evaluation: deterministic argmax of the logits.
    NOTE: the original also samples gumbel noise in eval mode; vqforge uses the argmax, as its
    ``get_codebook_entry`` path (used for sampling) does.
    """

    def __init__(self, in_channels: int, embed_dim: int, n_embed: int, straight_through: bool = True,
                 kl_weight: float = 5e-4, temp_init: float = 1.0):
        super().__init__()
        self.n_codes = n_embed
        self.embed_dim = embed_dim
        self.straight_through = straight_through
        self.kl_weight = kl_weight
        self.temperature = temp_init
        self.proj = nn.Conv2d(in_channels, n_embed, 1)
        self.embed = nn.Embedding(n_embed, embed_dim)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(z)  # (B, n_codes, h, w)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        logits = self.logits(z)
        if self.training:
            one_hot = F.gumbel_softmax(logits, tau=self.temperature, dim=1, hard=self.straight_through)
            indices = one_hot.argmax(dim=1)
        else:
            indices = logits.argmax(dim=1)
            one_hot = F.one_hot(indices, self.n_codes).permute(0, 3, 1, 2).to(logits.dtype)
        z_q = torch.einsum("bnhw,nd->bdhw", one_hot, self.embed.weight)  # (B, D, h, w)
        qy = F.softmax(logits, dim=1)
        kl = self.kl_weight * torch.sum(qy * torch.log(qy * self.n_codes + 1e-10), dim=1).mean()
        return QuantizerOutput(quantized=z_q, indices=indices, losses={"loss": kl, "kl": kl})

    def embed_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self.embed(indices).permute(0, 3, 1, 2).contiguous()  # (B, D, h, w)


@dataclass(frozen=True)
class GumbelConfig(QuantizerConfig):
    """``kind: gumbel``: the original GumbelQuantize. kl_weight: weight of the KL term to the uniform prior.
    temp_init: gumbel-softmax temperature (training may schedule it). straight_through: hard one-hot samples
    with straight-through gradients."""

    kind: ClassVar[str] = "gumbel"
    kl_weight: float = 5e-4
    temp_init: float = 1.0
    straight_through: bool = True

    def build(self, in_channels: int) -> GumbelQuantizer:
        return GumbelQuantizer(in_channels, self.embed_dim, self.n_embed, straight_through=self.straight_through,
                               kl_weight=self.kl_weight, temp_init=self.temp_init)
