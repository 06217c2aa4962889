"""Depth maps (the D-RIN condition stage): one channel, normalised per crop to [-1, 1] as the depth
conditioning does, L1 reconstruction loss, L1 / PSNR metrics, grayscale previews.

Files: the D-RIN layout (RGBA PNGs whose 4 bytes per pixel are one little-endian float32), or any
single-channel image (8/16-bit PNG, TIFF; larger = farther or nearer, only the order matters)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ... import imageio
from ...data.images import FileDataset, resize_crop
from ...metrics import psnr
from ...models.conditioning import ConditionConfig, build_condition
from .base import MapKind, register


def read_depth(path: Path) -> np.ndarray:
    """A depth map file as float32 (H, W) (see the module doc); raises on anything else."""
    img = imageio.read_image(path, mode=None)
    if img.mode == "RGBA":  # D-RIN: 4 bytes per pixel = one float32
        arr = np.ascontiguousarray(np.array(img)).view(np.float32)[..., 0]
    elif img.mode in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.array(img, dtype=np.float32)
    else:
        raise ValueError(f"expected a depth map (float32-in-RGBA or one channel), got mode {img.mode}")
    if not np.isfinite(arr).all():
        raise ValueError("depth map holds non-finite values")
    return arr


class DepthMaps(FileDataset):
    """Depth files -> ``{"depth": (1, size, size) float32}`` (bilinear resize, random or center crop)."""

    what = "depth map"

    def __init__(self, files: list[Path], size: int, random_crop: bool = True, resize_max: int = 0,
                 source: str | Path = "<data>"):
        self.size, self.random_crop, self.resize_max = size, random_crop, resize_max
        super().__init__(files, source)

    def open(self, path: Path) -> Image.Image:
        return Image.fromarray(read_depth(path), mode="F")

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
        return build_condition(ConditionConfig(mode="depth"), raw=batch["depth"].to(device))  # (B, 1, H, W)

    def loss(self, rec, x):
        return (rec - x).abs().mean()

    def metrics(self, rec, x):
        rec = rec.clamp(-1, 1)
        return {"val/l1": (rec - x).abs().mean().item(), "val/psnr": psnr(rec, x).mean().item()}

    def to_rgb(self, maps, n_labels: int):
        return maps.clamp(-1, 1).expand(-1, 3, -1, -1)
