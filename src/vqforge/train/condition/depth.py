"""Depth maps (the D-RIN condition stage): one channel, normalised per crop to [-1, 1] as the depth
conditioning does, L1 reconstruction loss, L1 / PSNR metrics, grayscale previews.

Files (read by the depth conditioning's own reader): the D-RIN layout (RGBA PNGs whose 4 bytes per pixel are
one little-endian float32), ``.npy`` arrays, or any single-channel image (8/16-bit PNG, TIFF)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ...data.images import FileDataset, resize_crop
from ...metrics import psnr
from ...models.conditioning import DepthConfig, make_condition, read_depth
from .base import MapKind, register


class DepthMaps(FileDataset):
    """Depth files -> ``{"depth": (1, size, size) float32}`` (bilinear resize, random or center crop)."""

    what = "depth map"

    def __init__(self, files: list[Path], size: int, random_crop: bool = True, resize_max: int = 0,
                 source: str | Path = "<data>"):
        self.size, self.random_crop, self.resize_max = size, random_crop, resize_max
        super().__init__(files, source)

    def open(self, path: Path) -> Image.Image:
        depth = read_depth(path)  # the depth conditioning's own reader
        if not np.isfinite(depth).all():
            raise ValueError("the depth map holds non-finite values")
        return Image.fromarray(depth, mode="F")

    def item(self, img: Image.Image, rng: random.Random, path: Path) -> dict[str, Any]:
        crop = "random" if self.random_crop else "center"
        img = resize_crop(img, self.size, crop, rng, resize_max=self.resize_max if self.random_crop else 0,
                          resample=Image.BILINEAR, source=path)
        return {"depth": torch.from_numpy(np.array(img, dtype=np.float32))[None]}


@register
class Depth(MapKind):
    name = "depth"

    def channels(self, n_labels: int) -> int:
        return 1

    def dataset(self, files, settings, train: bool, n_labels: int):
        return DepthMaps(files, settings.image_size, train, settings.resize_max if train else 0,
                         source=settings.data)

    def condition(self, batch, device, n_labels: int) -> torch.Tensor:
        return make_condition(DepthConfig()).build_input(raw=batch["depth"].to(device))  # (B, 1, H, W) in [-1, 1]

    def loss(self, rec, x):
        return (rec - x).abs().mean()

    def metrics(self, rec, x):
        rec = rec.clamp(-1, 1)
        return {"val/l1": (rec - x).abs().mean().item(), "val/psnr": psnr(rec, x).mean().item()}

    def to_rgb(self, maps, n_labels: int):
        return maps.clamp(-1, 1).expand(-1, 3, -1, -1)
