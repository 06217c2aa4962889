"""Finite scalar quantisation (Mentzer et al. 2023): no codebook, no collapse by construction."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import Quantizer, QuantizerOutput


class FSQuantizer(Quantizer):
    """Bound each of ``len(levels)`` channels with tanh to ``levels[i]`` values, round with a straight-through
    estimator, and number the grid points: ``n_codes = prod(levels)`` (e.g. (8, 5, 5, 5) gives 1000).

    Latents are projected from ``embed_dim`` to ``len(levels)`` channels by 1x1 convs ``proj_in`` /
    ``proj_out`` when the two differ. Codes handed on are the integers scaled to [-1, 1] per channel.
    The loss is zero (FSQ needs none); ``losses["loss"]`` is still present.
    """

    def __init__(self, levels: tuple[int, ...] | list[int], embed_dim: int, eps: float = 1e-3):
        super().__init__()
        levels = tuple(int(v) for v in levels)
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must be integers >= 2, got {levels}")
        self.levels = levels
        self.n_codes = math.prod(levels)
        self.embed_dim = embed_dim
        self.eps = eps
        d = len(levels)
        lv = torch.tensor(levels, dtype=torch.float32)
        basis = torch.cumprod(torch.tensor((1,) + levels[:-1], dtype=torch.long), dim=0)
        self.register_buffer("_levels", lv, persistent=False)  # (d,)
        self.register_buffer("_basis", basis, persistent=False)  # (d,) mixed-radix place values
        self.register_buffer("_half_width", torch.div(lv, 2, rounding_mode="floor"), persistent=False)
        if d != embed_dim:
            self.proj_in: nn.Module = nn.Conv2d(embed_dim, d, 1)
            self.proj_out: nn.Module = nn.Conv2d(d, embed_dim, 1)
        else:
            self.proj_in = nn.Identity()
            self.proj_out = nn.Identity()

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash z (..., d) so that rounding gives ``levels[i]`` integer values per channel."""
        half_l = (self._levels - 1) * (1 + self.eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Normalised codes (..., d) in [-1, 1] -> ids (...)."""
        digits = torch.round(codes * self._half_width + self._half_width).long()  # (..., d) in [0, L-1]
        return (digits * self._basis).sum(dim=-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Ids (...) -> normalised codes (..., d) in [-1, 1]."""
        digits = torch.div(indices.long()[..., None], self._basis, rounding_mode="floor") % self._levels.long()
        return (digits.to(self._levels.dtype) - self._half_width) / self._half_width

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        z_l = self.proj_in(z).permute(0, 2, 3, 1).float()  # (B, h, w, d)
        b = self.bound(z_l)
        q = b + (torch.round(b) - b).detach()  # straight-through rounding, (B, h, w, d)
        codes = q / self._half_width  # in [-1, 1]
        indices = self.codes_to_indices(codes.detach())  # (B, h, w)
        quantized = self.proj_out(codes.permute(0, 3, 1, 2).contiguous().to(z.dtype))  # (B, D, h, w)
        zero = z.new_zeros(())
        return QuantizerOutput(quantized=quantized, indices=indices, losses={"loss": zero})

    def embed_indices(self, indices: torch.Tensor) -> torch.Tensor:
        codes = self.indices_to_codes(indices).permute(0, 3, 1, 2).contiguous()  # (B, d, h, w)
        return self.proj_out(codes)  # (B, D, h, w)
