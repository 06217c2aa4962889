"""Image files <-> tensors, and image grids. Tensors are float in [-1, 1], CHW / NCHW.

Reading is one stack for every command, the web app, the demo and training: :func:`open_image` (a path or an
upload's bytes; one-line errors naming the file; EXIF orientation) and :func:`to_mode` (16-bit, alpha, palette and
gray converted one way, to the channel count a model was trained on: :func:`channels_mode`). Writing goes through
:func:`save_image` (atomic: :func:`vqforge.io.write_bytes`).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch

from .io import VQForgeError, write_bytes

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


class ImageTooLarge(VQForgeError):
    """An image whose header promises more pixels than the reader was allowed (a front end may answer 413);
    ``hw``: its (height, width)."""

    def __init__(self, message: str, hw: tuple[int, int]):
        super().__init__(message)
        self.hw = hw


def channels_mode(channels: int) -> str:
    """The PIL mode of a model's input channel count: 3 -> ``RGB``, 1 -> ``L`` (gray)."""
    if channels not in (1, 3):
        raise VQForgeError(f"a model of {channels}-channel images: vqforge reads images as RGB (3) or gray (1)")
    return "L" if channels == 1 else "RGB"


def open_image(source, name: str | Path | None = None, *, max_pixels: int | None = None,
               formats: tuple[str, ...] | None = None):
    """The one way vqforge opens an image: a path or bytes -> a fully decoded PIL image, upright.

    ``source``: a path, or the bytes of an upload (``name`` then names it in errors). The pixel count in the
    header is checked before any pixel is decoded, against ``max_pixels`` (:class:`ImageTooLarge`) or else PIL's
    decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``); ``formats``: the PIL formats accepted (others are an
    error). The EXIF orientation is applied, so a phone photo stored on its side comes out as it was seen. The
    image keeps its own mode (16-bit, palette, alpha...): :func:`to_mode` is the one conversion. Every failure is a
    :class:`VQForgeError` naming the file.
    """
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    name = name if name is not None else ("<upload>" if is_bytes else source)
    if is_bytes and not source:
        raise VQForgeError(f"{name}: the upload is empty")
    accepted = f" (accepted: {', '.join(formats)})" if formats else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
            try:
                im = Image.open(io.BytesIO(bytes(source)) if is_bytes else Path(source))  # the header only
            except UnidentifiedImageError:
                raise VQForgeError(f"{name}: not an image{accepted}" if is_bytes else
                                   f"{name}: not a readable image (no image format recognised)") from None
            with im:
                if formats and im.format not in formats:
                    raise VQForgeError(f"{name}: {im.format} images are not accepted{accepted}")
                w, h = im.size
                limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
                if limit and w * h > limit:
                    if max_pixels is not None:
                        raise ImageTooLarge(f"{name}: {h}x{w} px is more than allowed here ({limit} pixels)", (h, w))
                    raise VQForgeError(f"{name}: image of {w}x{h} px exceeds {limit} pixels (PIL.Image."
                                       f"MAX_IMAGE_PIXELS, the guard against decompression bombs); a corrupt file, "
                                       f"or raise that limit")
                fmt = im.format
                try:
                    im.load()
                except Exception as e:  # noqa: BLE001 - any decoder failure: the file is damaged
                    raise VQForgeError(f"{name}: damaged {fmt} data, not a readable image ({_reason(e, name)})"
                                       ) from None
                warnings.simplefilter("ignore", UserWarning)  # a corrupt EXIF block: read as not turned
                upright = ImageOps.exif_transpose(im)  # a copy, turned by its EXIF orientation (if any)
                upright.format = fmt
                return upright
    except VQForgeError:
        raise
    except FileNotFoundError:
        raise VQForgeError(f"{name}: image not found") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure (OSError, SyntaxError, struct.error, ...)
        raise VQForgeError(f"{name}: not a readable image ({_reason(e, name)})") from None


def _reason(e: BaseException, name) -> str:
    """A decoder's message in a few words, without the file name it may repeat."""
    text = str(e).splitlines()[0].replace(f"'{name}'", "").replace(str(name), "").strip(" :") if str(e) else ""
    return text[:120] or type(e).__name__


def to_mode(im, mode: str):
    """Convert a PIL image to ``mode`` (``RGB`` or ``L``) the one way vqforge does, whatever it was stored as.

    16-bit (and 32-bit integer) data are scaled to 8 bits by their bit depth (65535 -> 255, not clipped); float
    images by their own range; palettes are expanded; transparency (RGBA, LA, a palette's transparent colour) is
    composited onto white, so transparent pixels never show whatever colour happens to be stored under them.
    """
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im)
        if im.mode == "F":  # floating point: its own range
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0
        else:  # 16-bit data (also when stored in a 32-bit "I" image): 0..65535 -> 0..255
            arr = arr.astype(np.float64) / (257.0 if arr.max() > 255 else 1.0)
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return im if im.mode == mode else im.convert(mode)


def read_image(path: str | Path, mode: str | None = "RGB"):
    """An image file as a PIL image in ``mode`` (``RGB``, ``L``; None: as stored, e.g. label ids), upright.

    Reading is :func:`open_image` (one-line errors naming the file, the decompression-bomb guard, EXIF
    orientation), converting is :func:`to_mode` (bit depth, alpha, palette, gray): every command, the web app,
    the demo and training read images through here.
    """
    im = open_image(path)
    return to_mode(im, mode) if mode else im


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file as :func:`read_image` returns it (upright), from its header: no pixels
    decoded; one-line errors as :func:`open_image`."""
    from PIL import Image

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientation: a quarter turn
                return (h, w) if turned else (w, h)
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


def save_image(path: str | Path, image) -> Path:
    """Atomically write a PIL image; the format follows the suffix (PNG by default)."""
    import io

    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return write_bytes(path, buf.getvalue())


def save_tensor_image(path: str | Path, x: torch.Tensor) -> Path:
    """Atomically write a (C, H, W) tensor in [-1, 1] as an image file."""
    return save_image(path, tensor_to_pil(x))


def save_grid(path: str | Path, images: torch.Tensor, nrow: int | None = None) -> Path:
    """Atomically write (N, C, H, W) images in [-1, 1] as one RGB grid image (one channel is shown as gray)."""
    x = images.detach().float().cpu().clamp(-1, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return save_tensor_image(path, make_grid(x, nrow=nrow))
