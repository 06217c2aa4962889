"""The original VQ-VAE quantizer (``VectorQuantizer2`` in Taming Transformers)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Quantizer, QuantizerOutput


class VectorQuantizer(Quantizer):
    """Nearest-neighbour codebook lookup with a straight-through estimator.

    Args:
        n_embed: number of codebook entries.
        embed_dim: dimension of each entry (channels of the latents).
        beta: commitment weight.
        legacy: NOTE: kept for compatibility with the original, whose default applies ``beta`` to the
            codebook term instead of the commitment term: ``loss = |sg(z_q) - z|^2 + beta |z_q - sg(z)|^2``.
            ``legacy=False`` (the default for new models) is the VQ-VAE paper's form
            ``loss = beta |sg(z_q) - z|^2 + |z_q - sg(z)|^2``.
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, legacy: bool = False):
        super().__init__()
        self.n_codes = n_embed
        self.embed_dim = embed_dim
        self.beta = beta
        self.legacy = legacy
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)

    def codebook(self) -> torch.Tensor:
        """(n_codes, D) codebook vectors used for lookup."""
        return self.embedding.weight

    def nearest(self, z_flat: torch.Tensor) -> torch.Tensor:
        """Ids (N,) of the nearest codes to ``z_flat`` (N, D) in squared Euclidean distance."""
        e = self.codebook()
        d = z_flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2.0 * z_flat @ e.t()  # (N, n_codes)
        return d.argmin(dim=1)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        B, D, h, w = z.shape
        z_bhwc = z.permute(0, 2, 3, 1)  # (B, h, w, D)
        idx = self.nearest(z_bhwc.reshape(-1, D))  # (B*h*w,)
        z_q = self.codebook()[idx].view(B, h, w, D)
        commitment = F.mse_loss(z_bhwc, z_q.detach())
        codebook = F.mse_loss(z_q, z_bhwc.detach())
        if self.legacy:
            loss = commitment + self.beta * codebook
        else:
            loss = self.beta * commitment + codebook
        z_q = z_bhwc + (z_q - z_bhwc).detach()  # straight-through
        return QuantizerOutput(
            quantized=z_q.permute(0, 3, 1, 2).contiguous(),  # (B, D, h, w)
            indices=idx.view(B, h, w),
            losses={"loss": loss, "commitment": commitment, "codebook": codebook},
        )

    def embed_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self.codebook()[indices].permute(0, 3, 1, 2).contiguous()  # (B, D, h, w)
