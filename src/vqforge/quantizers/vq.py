"""The original VQ-VAE quantizer (``VectorQuantizer2`` in Taming Transformers), and the shared machinery
of every distance-based quantizer: optional k-means initialisation, dead-code restart and entropy penalty.

Subclasses (:class:`~vqforge.quantizers.ema.EMAVectorQuantizer`,
:class:`~vqforge.quantizers.l2.L2VectorQuantizer`) change the lookup space, the losses or the codebook
update through the hooks ``to_lookup`` / ``from_lookup`` / ``codebook`` / ``distances`` /
``codebook_losses`` / ``update_codebook`` / ``reseed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import Quantizer, QuantizerConfig, QuantizerOutput
from .distributed import all_reduce_min, all_reduce_sum, broadcast_from_rank0
from .entropy import EntropyOptions, entropy_penalty
from .kmeans import kmeans


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
        kmeans_init: initialise the codebook by k-means on the latents of the first training batches (as
            many batches as needed to gather 2 * n_embed latents; the codebook is left as is until then).
            Done once; the buffer ``kmeans_done`` records it so that a resumed run does not redo it.
        kmeans_iters: Lloyd iterations for that initialisation.
        restart_after: when > 0, a code unused for this many training steps is re-seeded from a latent
            of the current batch. The buffer ``code_age`` counts steps since each code was last used
            (usage counts are all-reduced over ranks under torch.distributed, and the new codes are
            taken from rank 0, so every rank keeps the same codebook).
        entropy_weight: weight of the entropy penalty (see :func:`~vqforge.quantizers.entropy.entropy_penalty`)
            on ``softmax(-distance / entropy_temperature)``; 0 turns it off.
        codebook_dim: dimension of the codebook vectors (the lookup space); defaults to ``embed_dim``.
            Subclasses that project latents (l2) set it.

    With every option off the module holds only ``embedding.weight`` and behaves exactly as the original.
    Codebook updates (k-means, restart, EMA) happen only in training mode with gradients enabled, so
    evaluation and ``torch.no_grad()`` encoding never change the model.
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, legacy: bool = False, *,
                 kmeans_init: bool = False, kmeans_iters: int = 10, restart_after: int = 0,
                 entropy_weight: float = 0.0, entropy_temperature: float = 0.01,
                 codebook_dim: int | None = None):
        super().__init__()
        self.n_codes = n_embed
        self.embed_dim = embed_dim
        self.codebook_dim = codebook_dim or embed_dim
        self.beta = beta
        self.legacy = legacy
        self.kmeans_iters = kmeans_iters
        self.restart_after = restart_after
        self.entropy_weight = entropy_weight
        self.entropy_temperature = entropy_temperature
        self.embedding = nn.Embedding(n_embed, self.codebook_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)
        # Extra state exists only when its feature is on, so default models keep the original's keys.
        self.kmeans_init = kmeans_init
        self._kmeans_pool: list[torch.Tensor] = []  # latents gathered for k-means (not saved)
        if kmeans_init:
            self.register_buffer("kmeans_done", torch.zeros((), dtype=torch.bool))
        if restart_after > 0:
            self.register_buffer("code_age", torch.zeros(n_embed))

    # ------------------------------------------------------------------ hooks for subclasses
    def to_lookup(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, embed_dim, h, w) -> lookup space (B, codebook_dim, h, w)."""
        return z

    def from_lookup(self, q: torch.Tensor) -> torch.Tensor:
        """Lookup space (B, codebook_dim, h, w) -> latents handed to the decoder (B, embed_dim, h, w)."""
        return q

    def codebook(self) -> torch.Tensor:
        """(n_codes, codebook_dim) codebook vectors used for lookup."""
        return self.embedding.weight

    def distances(self, z_flat: torch.Tensor) -> torch.Tensor:
        """Squared Euclidean distances (N, n_codes) from ``z_flat`` (N, codebook_dim) to the codes."""
        e = self.codebook()
        return z_flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2.0 * z_flat @ e.t()

    def codebook_losses(self, z: torch.Tensor, z_q: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses from latents ``z`` and their codes ``z_q`` (both (B, h, w, codebook_dim))."""
        commitment = F.mse_loss(z, z_q.detach())
        codebook = F.mse_loss(z_q, z.detach())
        if self.legacy:
            loss = commitment + self.beta * codebook
        else:
            loss = self.beta * commitment + codebook
        return {"loss": loss, "commitment": commitment, "codebook": codebook}

    @torch.no_grad()
    def update_codebook(self, z_flat: torch.Tensor, idx: torch.Tensor) -> None:
        """Non-gradient codebook update after a training lookup (EMA); nothing for the original."""

    @torch.no_grad()
    def reseed(self, codes: torch.Tensor, vectors: torch.Tensor) -> None:
        """Overwrite codes ``codes`` (M,) with ``vectors`` (M, codebook_dim) (k-means init, restarts)."""
        self.embedding.weight.data[codes] = vectors.to(self.embedding.weight.dtype)

    # ------------------------------------------------------------------ shared machinery
    def nearest(self, z_flat: torch.Tensor) -> torch.Tensor:
        """Ids (N,) of the nearest codes to ``z_flat`` (N, codebook_dim)."""
        return self.distances(z_flat).argmin(dim=1)

    @torch.no_grad()
    def _maybe_kmeans_init(self, z_flat: torch.Tensor) -> None:
        if not self.kmeans_init or bool(self.kmeans_done):
            return
        self._kmeans_pool.append(z_flat)
        # every rank must decide alike (the centres are broadcast): go by the smallest pool over ranks
        gathered = all_reduce_min(torch.tensor([sum(len(p) for p in self._kmeans_pool)], device=z_flat.device))
        if int(gathered) < 2 * self.n_codes:
            return  # keep gathering latents from the next batches
        pool = torch.cat(self._kmeans_pool)
        self._kmeans_pool = []
        centres, _ = kmeans(pool, self.n_codes, self.kmeans_iters, cosine=self._cosine_kmeans())
        broadcast_from_rank0(centres)
        self.reseed(torch.arange(self.n_codes, device=centres.device), centres)
        self.kmeans_done.fill_(True)

    def _cosine_kmeans(self) -> bool:
        return False

    @torch.no_grad()
    def _restart_dead(self, z_flat: torch.Tensor) -> None:
        """Re-seed codes unused for ``restart_after`` steps from latents of this batch (before lookup)."""
        dead = (self.code_age >= self.restart_after).nonzero().flatten()  # same on every rank
        if dead.numel() == 0:
            return
        n = z_flat.shape[0]
        if dead.numel() <= n:
            pick = torch.randperm(n, device=z_flat.device)[: dead.numel()]
        else:
            pick = torch.randint(0, n, (dead.numel(),), device=z_flat.device)
        vectors = z_flat[pick].clone()
        broadcast_from_rank0(vectors)
        self.reseed(dead, vectors)
        self.code_age[dead] = 0

    @torch.no_grad()
    def _track_usage(self, idx: torch.Tensor) -> None:
        counts = all_reduce_sum(torch.bincount(idx, minlength=self.n_codes).to(self.code_age.dtype))
        self.code_age += 1
        self.code_age[counts > 0] = 0

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        B, _, h, w = z.shape
        z_l = self.to_lookup(z)  # (B, C, h, w)
        C = z_l.shape[1]
        z_bhwc = z_l.permute(0, 2, 3, 1)  # (B, h, w, C)
        z_flat = z_bhwc.reshape(-1, C)  # (B*h*w, C)
        updating = self.training and torch.is_grad_enabled()
        if updating:
            self._maybe_kmeans_init(z_flat.detach())
            if self.restart_after > 0:
                self._restart_dead(z_flat.detach())
        d = self.distances(z_flat)  # (B*h*w, n_codes)
        idx = d.argmin(dim=1)  # (B*h*w,)
        z_q = self.codebook()[idx].view(B, h, w, C)
        losses = self.codebook_losses(z_bhwc, z_q)
        if self.entropy_weight > 0:
            ent = entropy_penalty(d, self.entropy_temperature)
            losses["loss"] = losses["loss"] + self.entropy_weight * ent["penalty"]
            losses["entropy"] = ent["penalty"]
        if updating:
            self.update_codebook(z_flat.detach(), idx)
            if self.restart_after > 0:
                self._track_usage(idx)
        z_q = z_bhwc + (z_q - z_bhwc).detach()  # straight-through
        return QuantizerOutput(
            quantized=self.from_lookup(z_q.permute(0, 3, 1, 2).contiguous()),  # (B, D, h, w)
            indices=idx.view(B, h, w),
            losses=losses,
        )

    def embed_indices(self, indices: torch.Tensor) -> torch.Tensor:
        q = self.codebook()[indices].permute(0, 3, 1, 2).contiguous()  # (B, C, h, w)
        return self.from_lookup(q)  # (B, D, h, w)


@dataclass(frozen=True)
class CodebookOptions(EntropyOptions):
    """Options of the distance-based kinds (vq, ema, l2): a mixin of their configs (see
    :class:`VectorQuantizer` for what each does).

    kmeans_init, kmeans_iters: k-means initialisation of the codebook from the first training batches.
    restart_after: re-seed codes unused for this many training steps (0 = off). entropy_weight,
    entropy_temperature: the entropy penalty (0 = off).
    """

    kmeans_init: bool = False
    kmeans_iters: int = 10
    restart_after: int = 0

    def codebook_options(self) -> dict:
        """Keyword arguments for :class:`VectorQuantizer` and its subclasses."""
        return dict(kmeans_init=self.kmeans_init, kmeans_iters=self.kmeans_iters, restart_after=self.restart_after,
                    **self.entropy_options())


@dataclass(frozen=True)
class VQConfig(CodebookOptions, QuantizerConfig):
    """``kind: vq``: the original VectorQuantizer2. beta: commitment weight. legacy: the original's beta
    placement (see :class:`VectorQuantizer`); the original's own checkpoints need ``legacy: true``."""

    kind: ClassVar[str] = "vq"
    beta: float = 0.25
    legacy: bool = False

    def build(self, in_channels: int) -> VectorQuantizer:
        return VectorQuantizer(self.n_embed, self.embed_dim, beta=self.beta, legacy=self.legacy,
                               **self.codebook_options())
