"""A small image-folder reader for evaluation: files -> float tensors in [-1, 1], in batches."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..io import VQForgeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def list_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive, sorted); a single image file is a list of one."""
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() not in IMAGE_SUFFIXES:
            raise VQForgeError(f"{root}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
        return [root]
    if not root.is_dir():
        raise VQForgeError(f"{root}: no such image folder")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise VQForgeError(f"{root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)}, recursively)")
    return paths


def load_image(path: str | Path, size: int | None = None) -> torch.Tensor:
    """Read one image as RGB (3, H, W) float32 in [-1, 1]; ``size`` resizes the shorter side and centre-crops."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None:
                w, h = im.size
                s = size / min(w, h)
                im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
                w, h = im.size
                left, top = (w - size) // 2, (h - size) // 2
                im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise VQForgeError(f"{path}: cannot read image ({e})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1.0  # (3, H, W)


def iter_image_batches(paths: list[Path], batch_size: int, size: int | None = None) -> Iterator[torch.Tensor]:
    """Yield (B, 3, H, W) batches; consecutive images of different sizes go into separate batches."""
    batch: list[torch.Tensor] = []
    for p in paths:
        img = load_image(p, size)
        if batch and (len(batch) == batch_size or img.shape != batch[0].shape):
            yield torch.stack(batch)
            batch = []
        batch.append(img)
    if batch:
        yield torch.stack(batch)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> uint8 [0, 255] (round to nearest), same shape."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
