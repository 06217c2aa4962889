"""Image files <-> tensors, and image grids. Tensors are float in [-1, 1], CHW / NCHW.

Reading goes through PIL with one-line errors that name the file; writing goes through
:func:`vqforge.io.save_image` (atomic).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch

from .io import VQForgeError, save_image

#: The contact sheet that `vqforge sample` / `vqforge complete` write beside their images (not a sample).
GRID_NAME = "grid.png"
#: The record those commands write beside their images: every setting, and under ``samples`` each image they wrote.
SETTINGS_NAME = "settings.json"

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def list_images(path: str | Path) -> list[Path]:
    """An image file itself, or every image under a folder (recursive, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    raise VQForgeError(f"{path}: no such file or directory")


def read_image(path: str | Path, mode: str = "RGB"):
    """Open an image with PIL and convert it to ``mode``; a one-line error for unreadable files.

    Whatever the bytes of the file, the result is an image or a :class:`VQForgeError` naming the file:
    the size in the header is checked against PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``)
    before any pixel is decoded, and every decoder failure becomes "not a readable image".
    """
    from PIL import Image

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
            with Image.open(path) as im:
                w, h = im.size
                limit = Image.MAX_IMAGE_PIXELS
                if limit and w * h > limit:
                    raise VQForgeError(f"{path}: image of {w}x{h} px exceeds {limit} pixels (PIL.Image."
                                       f"MAX_IMAGE_PIXELS, the guard against decompression bombs); a corrupt file, "
                                       f"or raise that limit")
                im.load()
                return im.convert(mode) if mode else im.copy()
    except VQForgeError:
        raise
    except FileNotFoundError:
        raise VQForgeError(f"{path}: image not found") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure (OSError, SyntaxError, struct.error, ...)
        reason = str(e).splitlines()[0].replace(f"'{path}'", "").replace(str(path), "").strip(" :") if str(e) else ""
        raise VQForgeError(f"{path}: not a readable image ({reason or type(e).__name__})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file from its header (no pixels decoded); one-line errors as :func:`read_image`."""
    from PIL import Image

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size
    except FileNotFoundError:
        raise VQForgeError(f"{path}: image not found") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure
        raise VQForgeError(f"{path}: not a readable image ({type(e).__name__})") from None


def pil_to_tensor(image) -> torch.Tensor:
    """PIL image -> float tensor (C, H, W) in [-1, 1]."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr / 127.5 - 1.0).permute(2, 0, 1).contiguous()


def tensor_to_pil(x: torch.Tensor):
    """Float tensor (C, H, W) in [-1, 1] -> 8-bit PIL image (RGB, or L for one channel)."""
    from PIL import Image

    x = x.detach().float().clamp(-1, 1).cpu()
    arr = ((x + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile (N, C, H, W) images into one (C, H', W') image with ``nrow`` images per row."""
    n, c, h, w = images.shape
    nrow = min(nrow or max(1, math.ceil(math.sqrt(n))), n)
    ncol = math.ceil(n / nrow)
    grid = torch.full((c, ncol * (h + padding) + padding, nrow * (w + padding) + padding), pad_value, dtype=images.dtype)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid


def save_tensor_image(path: str | Path, x: torch.Tensor) -> Path:
    """Atomically write a (C, H, W) tensor in [-1, 1] as an image file."""
    return save_image(path, tensor_to_pil(x))


def save_grid(path: str | Path, images: torch.Tensor, nrow: int | None = None) -> Path:
    """Atomically write (N, C, H, W) images in [-1, 1] as one RGB grid image (one channel is shown as gray)."""
    x = images.detach().float().cpu().clamp(-1, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return save_tensor_image(path, make_grid(x, nrow=nrow))
