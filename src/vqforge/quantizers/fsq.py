"""Finite scalar quantisation (Mentzer et al. 2023): no codebook, no collapse by construction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..config import ConfigError
from .base import Quantizer, QuantizerConfig, QuantizerOutput, projections
from .distributed import all_reduce_sum
from .entropy import EntropyOptions, entropy_penalty


class FSQuantizer(Quantizer):
    """Bound each of ``len(levels)`` channels with tanh to ``levels[i]`` values, round with a straight-through
    estimator, and number the grid points: ``n_codes = prod(levels)`` (e.g. (8, 5, 5, 5) gives 1000).

    Latents are projected from ``embed_dim`` to ``len(levels)`` channels by 1x1 convs ``proj_in`` /
    ``proj_out`` when the two differ. Codes handed on are the integers scaled to [-1, 1] per channel.
    The loss is zero (FSQ needs none); ``losses["loss"]`` is still present.

    ``entropy_weight``: the entropy penalty of the distance-based kinds, on
    ``softmax(-|bound(z) - g|^2 / entropy_temperature)`` over all grid points g in level units (adjacent levels
    are 1 apart), which rewards spreading latents over the whole grid rather than along a few correlated
    directions; 0 turns it off.

    ``data_init``: on the first training batch, rescale ``proj_in`` so that each projected channel has zero
    mean and unit standard deviation over the batch (data-dependent initialisation, as ActNorm; statistics
    all-reduced under torch.distributed). Without it a freshly initialised encoder puts nearly all latents
    in the central grid cells and training must first learn to spread them. Done once; the buffer
    ``data_init_done`` records it so that a resumed run does not redo it. Needs the projection
    (``embed_dim != len(levels)``).
    """

    def __init__(self, levels: tuple[int, ...] | list[int], embed_dim: int, eps: float = 1e-3,
                 data_init: bool = False, entropy_weight: float = 0.0, entropy_temperature: float = 1.0):
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
        self.proj_in, self.proj_out = projections(embed_dim, d)
        self.data_init = data_init
        self.entropy_weight = entropy_weight
        self.entropy_temperature = entropy_temperature
        if data_init:
            if d == embed_dim:
                raise ValueError("FSQ data_init needs a projection: set embed_dim different from len(levels)")
            self.register_buffer("data_init_done", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def _data_init(self, z: torch.Tensor) -> None:
        """Rescale ``proj_in`` so that its outputs on ``z`` (B, embed_dim, h, w) are standardised per channel."""
        y = self.proj_in(z).transpose(0, 1).flatten(1).double()  # (d, B*h*w)
        stats = all_reduce_sum(torch.stack([y.sum(1), y.pow(2).sum(1), torch.full_like(y[:, 0], y.shape[1])]))
        mean = stats[0] / stats[2]
        std = (stats[1] / stats[2] - mean.pow(2)).clamp_min(1e-12).sqrt()
        scale = (1.0 / std).to(self.proj_in.weight.dtype)
        self.proj_in.weight.mul_(scale[:, None, None, None])
        self.proj_in.bias.sub_(mean.to(self.proj_in.bias.dtype)).mul_(scale)
        self.data_init_done.fill_(True)

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
        if self.data_init and self.training and torch.is_grad_enabled() and not bool(self.data_init_done):
            self._data_init(z.detach())
        z_l = self.proj_in(z).permute(0, 2, 3, 1).float()  # (B, h, w, d)
        b = self.bound(z_l)
        q = b + (torch.round(b) - b).detach()  # straight-through rounding, (B, h, w, d)
        codes = q / self._half_width  # in [-1, 1]
        indices = self.codes_to_indices(codes.detach())  # (B, h, w)
        quantized = self.proj_out(codes.permute(0, 3, 1, 2).contiguous().to(z.dtype))  # (B, D, h, w)
        losses = {"loss": z.new_zeros(())}
        if self.entropy_weight > 0:
            grid = self.indices_to_codes(torch.arange(self.n_codes, device=z.device)) * self._half_width  # (K, d)
            b_flat = b.reshape(-1, b.shape[-1])  # (N, d), level units
            dist = b_flat.pow(2).sum(1, keepdim=True) + grid.pow(2).sum(1) - 2.0 * b_flat @ grid.t()  # (N, K)
            ent = entropy_penalty(dist, self.entropy_temperature)
            losses = {"loss": self.entropy_weight * ent["penalty"], "entropy": ent["penalty"]}
        return QuantizerOutput(quantized=quantized, indices=indices, losses=losses)

    def embed_indices(self, indices: torch.Tensor) -> torch.Tensor:
        codes = self.indices_to_codes(indices).permute(0, 3, 1, 2).contiguous()  # (B, d, h, w)
        return self.proj_out(codes)  # (B, D, h, w)


@dataclass(frozen=True)
class FSQConfig(EntropyOptions, QuantizerConfig):
    """``kind: fsq``: finite scalar quantisation. levels: values per channel (integers >= 2); ``n_embed`` must
    equal their product. data_init: standardise the projected latents on the first training batch (needs
    ``embed_dim != len(levels)``). entropy_weight, entropy_temperature: the entropy penalty over the grid, in
    level units (a temperature near 1 suits it)."""

    kind: ClassVar[str] = "fsq"
    renamed_keys: ClassVar[dict[str, str | None]] = {"fsq_levels": "levels", "fsq_data_init": "data_init"}
    n_embed: int = 1000
    levels: tuple[int, ...] = (8, 5, 5, 5)
    data_init: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.levels or min(self.levels) < 2:
            raise ConfigError.at("levels", f"must be integers >= 2, got {list(self.levels)}")
        if self.n_embed != math.prod(self.levels):
            raise ConfigError.at("n_embed", f"is {self.n_embed}, but levels {list(self.levels)} give "
                                            f"{math.prod(self.levels)} codes; set it to {math.prod(self.levels)}")
        if self.data_init and self.embed_dim == len(self.levels):
            raise ConfigError.at("data_init", "needs a projection: embed_dim must differ from len(levels)")

    def build(self, in_channels: int) -> FSQuantizer:
        return FSQuantizer(self.levels, self.embed_dim, data_init=self.data_init, **self.entropy_options())
