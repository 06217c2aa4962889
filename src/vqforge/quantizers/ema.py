"""Vector quantizer whose codebook follows exponential moving averages of its assigned latents
(VQ-VAE appendix / VQ-VAE-2): no codebook gradient, only the commitment loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..config import ConfigError
from .base import QuantizerConfig
from .distributed import all_reduce_sum
from .vq import CodebookOptions, VectorQuantizer


class EMAVectorQuantizer(VectorQuantizer):
    """Nearest-neighbour lookup; codes are EMA cluster means instead of learned parameters.

    After each training lookup, with ``n_k`` latents assigned to code k and ``s_k`` their sum::

        cluster_size_k <- decay * cluster_size_k + (1 - decay) * n_k
        embed_sum_k    <- decay * embed_sum_k    + (1 - decay) * s_k
        N = sum_k cluster_size_k
        code_k = embed_sum_k / ((cluster_size_k + eps) / (N + K * eps) * N)   (Laplace smoothing)

    Counts and sums are all-reduced over ranks under torch.distributed. ``embedding.weight`` keeps the
    original key name but does not require grad; ``cluster_size`` and ``embed_sum`` are buffers (start at
    1 and at the initial codes, so an unused code keeps its value until it decays). The loss is
    ``beta * |z - sg(z_q)|^2``. Options of :class:`VectorQuantizer` (k-means init, restart, entropy) apply;
    re-seeded codes restart with cluster size 1.
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, decay: float = 0.99,
                 eps: float = 1e-5, **options):
        super().__init__(n_embed, embed_dim, beta=beta, legacy=False, **options)
        self.decay = decay
        self.eps = eps
        self.embedding.weight.requires_grad_(False)
        self.register_buffer("cluster_size", torch.ones(n_embed))
        self.register_buffer("embed_sum", self.embedding.weight.detach().clone())

    def codebook(self) -> torch.Tensor:
        # A copy: the in-place EMA update after the lookup must not touch a tensor saved for backward
        # (the entropy penalty differentiates the distances with respect to the latents).
        return self.embedding.weight.detach().clone()

    def codebook_losses(self, z: torch.Tensor, z_q: torch.Tensor) -> dict[str, torch.Tensor]:
        commitment = F.mse_loss(z, z_q.detach())
        return {"loss": self.beta * commitment, "commitment": commitment}

    @torch.no_grad()
    def update_codebook(self, z_flat: torch.Tensor, idx: torch.Tensor) -> None:
        K = self.n_codes
        counts = torch.bincount(idx, minlength=K).to(self.cluster_size.dtype)  # (K,)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, idx, z_flat.to(self.embed_sum.dtype))  # (K, C)
        all_reduce_sum(counts)
        all_reduce_sum(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + K * self.eps) * n  # (K,)
        self.embedding.weight.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def reseed(self, codes: torch.Tensor, vectors: torch.Tensor) -> None:
        super().reseed(codes, vectors)
        self.cluster_size[codes] = 1.0
        self.embed_sum[codes] = vectors.to(self.embed_sum.dtype)


@dataclass(frozen=True)
class EMAVQConfig(CodebookOptions, QuantizerConfig):
    """``kind: ema``: codes follow exponential moving averages of their latents. beta: commitment weight.
    decay: EMA decay in [0, 1). eps: Laplace smoothing of the cluster sizes."""

    kind: ClassVar[str] = "ema"
    renamed_keys: ClassVar[dict[str, str | None]] = {"ema_decay": "decay", "ema_eps": "eps"}
    beta: float = 0.25
    decay: float = 0.99
    eps: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.decay < 1.0:
            raise ConfigError.at("decay", f"must be in [0, 1), got {self.decay}")

    def build(self, in_channels: int) -> EMAVectorQuantizer:
        return EMAVectorQuantizer(self.n_embed, self.embed_dim, beta=self.beta, decay=self.decay, eps=self.eps,
                                  **self.codebook_options())
