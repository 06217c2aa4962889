"""Segmentation maps (the original's ``VQSegmentationModel``): label-id PNGs, one-hot input with
``n_labels`` channels, binary cross-entropy on the decoder's logits, pixel accuracy, colourised previews."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ... import imageio
from ...data.images import FileDataset, resize_crop
from ...io import VQForgeError
from ...models.conditioning import SegmentationConfig, colorize_labels, make_condition
from .base import MapKind, register


class SegmentationMaps(FileDataset):
    """Label maps (8-bit PNG, one id per pixel) -> ``{"labels": (size, size) int64}``: the smallest side
    resized to ``size`` (random crops: drawn from ``[size, resize_max]`` when that is larger) with NEAREST,
    then a random (train) or center crop. ``label_shift`` is added modulo 256 (COCO-Stuff: 255 = unlabeled
    becomes 0). A label id >= ``n_labels`` is an error naming the file."""

    what = "label map"

    def __init__(self, files: list[Path], size: int, n_labels: int, random_crop: bool = True, label_shift: int = 0,
                 resize_max: int = 0, source: str | Path = "<data>"):
        self.size, self.n_labels, self.random_crop = size, n_labels, random_crop
        self.label_shift, self.resize_max = label_shift, resize_max
        super().__init__(files, source)

    def open(self, path: Path) -> Image.Image:
        img = imageio.read_image(path, mode=None)
        if img.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(f"expected a single-channel label map, got mode {img.mode}")
        return img

    def item(self, img: Image.Image, rng: random.Random, path: Path) -> dict[str, Any]:
        crop = "random" if self.random_crop else "center"
        img = resize_crop(img, self.size, crop, rng, resize_max=self.resize_max if self.random_crop else 0,
                          resample=Image.NEAREST, source=path)
        arr = np.array(img, dtype=np.int64)
        if self.label_shift:
            arr = (arr + self.label_shift) % 256
        if arr.max() >= self.n_labels:
            raise VQForgeError(f"{path}: label id {int(arr.max())} >= n_labels={self.n_labels}")
        return {"labels": torch.from_numpy(arr)}


@register
class Segmentation(MapKind):
    name = "segmentation"
    preview_name = "seg"  # NOTE: the file name segmentation runs wrote before there were other kinds
    logits_output = True

    def channels(self, n_labels: int) -> int:
        return n_labels

    def dataset(self, files, settings, train: bool, n_labels: int) -> FileDataset:
        return SegmentationMaps(files, settings.image_size, n_labels, train, settings.label_shift,
                                settings.resize_max if train else 0, source=settings.data)

    def condition(self, batch, device, n_labels: int) -> torch.Tensor:
        mode = make_condition(SegmentationConfig(n_labels=n_labels))  # what the transformer's condition does
        return mode.build_input(raw=batch["labels"].to(device))  # (B, n_labels, H, W) in {0, 1}

    def loss(self, rec, x):
        return F.binary_cross_entropy_with_logits(rec, x)

    def metrics(self, rec, x):
        return {"val/pixel_accuracy": (rec.argmax(1) == x.argmax(1)).float().mean().item()}

    def to_rgb(self, maps, n_labels: int):
        return colorize_labels(maps, n_labels)
