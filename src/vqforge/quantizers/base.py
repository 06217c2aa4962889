"""The quantizer interface: one fixed return type for every kind."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


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

    Subclasses implement :meth:`forward` and :meth:`embed_indices` and set :attr:`n_codes`.
    """

    n_codes: int

    def forward(self, z: torch.Tensor) -> QuantizerOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def embed_indices(self, indices: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """Codebook latents (B, D, h, w) for integer ids (B, h, w)."""
        raise NotImplementedError


def perplexity(indices: torch.Tensor, n_codes: int) -> torch.Tensor:
    """exp(entropy) of the empirical code distribution of ``indices`` (any shape)."""
    counts = torch.bincount(indices.flatten(), minlength=n_codes).float()
    p = counts / counts.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())
