"""Low-resolution images (super-resolution) through a three-channel condition stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .base import KEY
from .spatial import StageCondition, StageConfig


@dataclass(frozen=True)
class LowresConfig(StageConfig):
    """lowres_factor: how much smaller the low-resolution condition is than the image."""

    mode: ClassVar[str] = "lowres"
    lowres_factor: int = 4


class Lowres(StageCondition):
    """Model input: images (B, 3, H/r, W/r) in [-1, 1] (computed from the images by area downscaling).
    Condition files: the low-resolution images themselves."""

    Config = LowresConfig
    input_hint = "low-resolution images (--cond)"
    stage_channels = 3

    def input_hw(self, image_hw):
        r = self.config.lowres_factor
        return int(image_hw[0]) // r, int(image_hw[1]) // r

    def image_hw_for(self, input_hw):
        r = self.config.lowres_factor
        return int(input_hw[0]) * r, int(input_hw[1]) * r

    def build_input(self, images=None, raw=None) -> torch.Tensor:
        if images is None:
            raise ValueError("lowres conditioning is computed from the images")
        return F.interpolate(images, scale_factor=1 / self.config.lowres_factor, mode="area")

    def input_from_map(self, img, path="") -> torch.Tensor:
        return self.raw_from_map(img, path)[None]  # the low-resolution image is the model input

    def problems(self) -> list[str]:
        out = super().problems()
        if self.config.lowres_factor < 1:
            out.append(f"{KEY}.lowres_factor must be >= 1, got {self.config.lowres_factor}")
        return out
