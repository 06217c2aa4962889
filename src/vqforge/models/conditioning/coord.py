"""Coordinates: where a crop lies in its image (the original FacesHQ conditioning), through the coordinate stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import Condition, ConditionConfig
from .spatial import SpatialCondition


@dataclass(frozen=True)
class CoordConfig(ConditionConfig):
    """coord_n_embed, coord_down_factor: the coordinate stage's levels and downsampling. downsample_cond_size,
    null_condition, dropout: as for the condition-stage modes (:class:`~.spatial.StageConfig`)."""

    mode: ClassVar[str] = "coord"
    coord_n_embed: int = 1024
    coord_down_factor: int = 16
    downsample_cond_size: int = -1
    null_condition: bool = False
    dropout: float = 0.0


class CoordStage(nn.Module):
    """The original's ``CoordStage``: quantises a coordinate map in [0, 1] to ``n_embed`` levels.

    Has no parameters; ``encode(c (B, 1, H, W)) -> ids (B, H/f, W/f)``, ``decode(ids) -> (B, 1, H, W)``.
    """

    def __init__(self, n_embed: int, down_factor: int):
        super().__init__()
        self.n_embed = n_embed
        self.down_factor = down_factor

    @property
    def n_codes(self) -> int:
        return self.n_embed + 1

    @property
    def downsample_factor(self) -> int:
        return self.down_factor

    def encode_to_indices(self, c: torch.Tensor) -> torch.Tensor:
        if c.shape[1] != 1:
            raise ValueError(f"coordinate conditions have 1 channel, got {c.shape[1]}")
        c = F.interpolate(c, scale_factor=1 / self.down_factor, mode="area").clamp(0.0, 1.0)
        # NOTE: round(n_embed * c) as the original, so ids span 0..n_embed inclusive.
        return (self.n_embed * c).round().long()[:, 0]  # (B, h, w)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        c = indices[:, None].float() / self.n_embed
        return F.interpolate(c, scale_factor=self.down_factor, mode="nearest")


def coord_map(batch: int, height: int, width: int, device=None) -> torch.Tensor:
    """The original FacesHQ coordinate map: raster position / (H*W), shape (B, 1, H, W), in [0, 1)."""
    c = torch.arange(height * width, device=device, dtype=torch.float32).view(1, 1, height, width) / (height * width)
    return c.expand(batch, 1, height, width).contiguous()


class Coord(SpatialCondition):
    """Model input: coordinates (B, 1, H, W) in [0, 1] (default: the raster positions of the whole image; training
    on crops of larger images gives each crop its place); tokens: ``round(n_embed * area_pool(c))``."""

    Config = CoordConfig
    raw_input = "coordinates"
    input_hint = "nothing (coordinates are computed)"

    @property
    def factor(self) -> int:
        return self.config.coord_down_factor

    @property
    def codes(self) -> int:
        return self.config.coord_n_embed + 1  # ids 0..n_embed

    @property
    def n_ids(self) -> int:
        # NOTE: the original's configs set vocab_size = n_embed, so the top id n_embed is clamped (see encode)
        return self.config.coord_n_embed + (2 if self.null_id is not None else 0)

    def build_stage(self) -> nn.Module:
        return CoordStage(self.config.coord_n_embed, self.config.coord_down_factor)

    def build_input(self, images=None, raw=None) -> torch.Tensor:
        if raw is not None:
            return raw
        if images is None:
            raise ValueError("coord conditioning needs the images or a coordinate map")
        B, _, H, W = images.shape
        return coord_map(B, H, W, images.device)

    def default_input(self, batch, image_hw, device=None) -> torch.Tensor:
        return coord_map(batch, image_hw[0], image_hw[1], device)

    def encode(self, c: torch.Tensor) -> torch.Tensor:
        idx = super().encode(c)
        return idx.clamp_max(self.vocab_size - 1) if self.vocab_size else idx

    def displayable(self, rec: torch.Tensor) -> torch.Tensor:
        return rec * 2 - 1

    def read_condition(self, path, image_hw=None):
        return Condition.read_condition(self, path, image_hw)
