"""A conditioning mode's condition files alone, as training items of its condition stage
(``vqforge train condition``).

The mode reads each file (its ``read_map``: label PNGs, depth maps, ...) and turns it into its raw data (its
``raw_from_map``); this module only cuts: the smallest side resized to ``size`` (random crops: drawn from
``[size, resize_max]`` when that is larger) with the mode's filter (``map_resample``), then a random or centre
crop (:func:`~vqforge.data.images.resize_crop`, the one resize-and-crop rule).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .images import FileDataset, resize_crop


class ConditionMaps(FileDataset):
    """Condition files of the spatial mode ``condition`` -> ``{condition.raw_input: raw data, "bad": int}`` (for
    segmentation: label maps (size, size) int64; for depth: (1, size, size) float32).

    ``label_shift`` (files of label ids only, the mode's ``stage_training.label_ids``) is added to every id
    modulo 256 before the mode checks it (COCO-Stuff: 255 = unlabeled becomes 0)."""

    def __init__(self, condition, files: list[Path], size: int, random_crop: bool = True, label_shift: int = 0,
                 resize_max: int = 0, source: str | Path = "<data>"):
        self.condition, self.size, self.random_crop = condition, size, random_crop
        self.label_shift, self.resize_max = label_shift, resize_max
        self.what = f"{condition.name} map"
        super().__init__(files, source)

    def open(self, path: Path) -> Image.Image:
        return self.condition.read_map(path)

    def item(self, img: Image.Image, rng: random.Random, path: Path) -> dict[str, Any]:
        crop = "random" if self.random_crop else "center"
        img = resize_crop(img, self.size, crop, rng, resize_max=self.resize_max if self.random_crop else 0,
                          resample=self.condition.map_filter, source=path)
        if self.label_shift:
            img = Image.fromarray(((np.asarray(img).astype(np.int64) + self.label_shift) % 256).astype(np.uint8))
        return {self.condition.raw_input: self.condition.raw_from_map(img, path)}
