"""Factorised, l2-normalised codes (ViT-VQGAN, LlamaGen): a low-dimensional cosine-similarity lookup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..config import ConfigError
from .base import QuantizerConfig, projections
from .vq import CodebookOptions, VectorQuantizer


class L2VectorQuantizer(VectorQuantizer):
    """Project latents to ``codebook_dim`` (e.g. 8 to 32) with a 1x1 conv, l2-normalise latents and codes,
    look up the nearest code by cosine similarity, project the code back to ``embed_dim``.

    Keys: ``embedding.weight`` (n_codes, codebook_dim; normalised on use), and ``proj_in.*`` /
    ``proj_out.*`` when ``codebook_dim != embed_dim`` (identity otherwise). Losses are those of the
    non-legacy original, on the normalised vectors: ``beta * |z - sg(q)|^2 + |q - sg(z)|^2``.
    Options of :class:`VectorQuantizer` (k-means init, which is then spherical, restart, entropy) apply.
    """

    def __init__(self, n_embed: int, embed_dim: int, codebook_dim: int = 8, beta: float = 0.25, **options):
        codebook_dim = codebook_dim or embed_dim
        super().__init__(n_embed, embed_dim, beta=beta, legacy=False, codebook_dim=codebook_dim, **options)
        self.proj_in, self.proj_out = projections(embed_dim, codebook_dim)

    def to_lookup(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj_in(z), dim=1)  # (B, codebook_dim, h, w), unit length

    def from_lookup(self, q: torch.Tensor) -> torch.Tensor:
        return self.proj_out(q)  # (B, embed_dim, h, w)

    def codebook(self) -> torch.Tensor:
        return F.normalize(self.embedding.weight, dim=1)  # (n_codes, codebook_dim)

    def _cosine_kmeans(self) -> bool:
        return True


@dataclass(frozen=True)
class L2VQConfig(CodebookOptions, QuantizerConfig):
    """``kind: l2``: l2-normalised codes looked up by cosine similarity. beta: commitment weight.
    codebook_dim: dimension of the lookup (e.g. 8 to 32); 0 means ``embed_dim`` (no projection)."""

    kind: ClassVar[str] = "l2"
    beta: float = 0.25
    codebook_dim: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.codebook_dim < 0:
            raise ConfigError.at("codebook_dim", f"must be >= 0 (0: embed_dim), got {self.codebook_dim}")

    def build(self, in_channels: int) -> L2VectorQuantizer:
        return L2VectorQuantizer(self.n_embed, self.embed_dim, codebook_dim=self.codebook_dim, beta=self.beta,
                                 **self.codebook_options())
