"""Images in and out of the web app: checked decoding of uploads, PNGs that carry their settings, palettes.

Uploads are bytes from the client, decoded in memory (never a path the client names) by the one image reader
(:mod:`vqforge.imageio`, as every command and training): the format must be one of :data:`FORMATS`, the pixel
count is checked from the header before any pixel is decoded, and a damaged file is one line of error. Results are PNGs with their settings in a ``vqforge`` text chunk. Sizes in
messages are height x width, as everywhere in vqforge.
"""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import torch

from .. import __version__
from ..imageio import ImageTooLarge, channels_mode, open_image, pil_to_tensor, tensor_to_pil, to_mode
from ..io import VQForgeError
from ..labels import distinct_colours
from .forms import BadInput, Limits

#: Image formats accepted from clients (what PIL reports after reading the header).
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
#: Lossless formats, the only ones that can carry label ids.
LOSSLESS = ("PNG", "BMP", "GIF")


def decode_image(data: bytes, what: str, limits: Limits):
    """A fully decoded, upright PIL image from uploaded bytes, or :class:`BadInput` naming ``what`` and the problem.

    The one image reader (:func:`vqforge.imageio.open_image`) in memory, with the formats and pixel count the
    server accepts (checked from the header, before any pixel is decoded).
    """
    if not data:
        raise BadInput(f"{what}: the upload is empty")
    try:
        return open_image(data, what, max_pixels=limits.max_upload_pixels, formats=FORMATS)
    except ImageTooLarge as e:
        h, w = e.hw
        raise BadInput(f"{what}: {h}x{w} px is more than the server accepts ({limits.max_upload_pixels} pixels, "
                       f"--max-upload-pixels)", status=413) from None
    except VQForgeError as e:
        raise BadInput(str(e)) from None


def _within_side(im, what: str, limits: Limits):
    w, h = im.size
    if max(w, h) > limits.max_side:
        raise BadInput(f"{what}: {h}x{w} px is larger than the models work at here (--max-side {limits.max_side}); "
                       f"scale it down first", status=413)
    return im


def decode_photo(data: bytes, what: str, limits: Limits, factor: int = 1, channels: int = 3,
                 crop: bool = False) -> torch.Tensor:
    """An uploaded photo as (C, H, W) in [-1, 1], ``channels`` 3 (RGB) or 1 (gray); sides must be multiples of
    ``factor`` (``crop``: centre-cropped)."""
    im = to_mode(_within_side(decode_image(data, what, limits), what, limits), channels_mode(channels))
    w, h = im.size
    if crop:
        w2, h2 = w // factor * factor, h // factor * factor
        if not w2 or not h2:
            raise BadInput(f"{what}: {h}x{w} px is smaller than the model's downsampling factor {factor}")
        im = im.crop(((w - w2) // 2, (h - h2) // 2, (w - w2) // 2 + w2, (h - h2) // 2 + h2))
    elif w % factor or h % factor:
        raise BadInput(f"{what}: {h}x{w} px is not a multiple of the model's downsampling factor {factor}")
    return pil_to_tensor(im)


def decode_mask(data: bytes, what: str, limits: Limits, hw: tuple[int, int]) -> torch.Tensor:
    """An uploaded mask as (H, W) bool, True (white, > 127) where the image is to be resampled."""
    im = decode_image(data, what, limits)
    if im.size != (hw[1], hw[0]):
        raise BadInput(f"{what}: {im.size[1]}x{im.size[0]} px, but the image is {hw[0]}x{hw[1]} px")
    mask = torch.from_numpy(np.asarray(to_mode(im, "L")) > 127)
    if not mask.any():
        raise BadInput(f"{what}: the mask is empty (paint the part to resample)")
    return mask


def decode_labels(data: bytes, what: str, limits: Limits, n_labels: int) -> np.ndarray:
    """An uploaded segmentation map as (H, W) int64 label ids in [0, n_labels).

    A lossless image of one channel (L, P, I) whose values are the ids, or an RGB(A) image with R = G = B
    (what a browser canvas writes) whose gray value is the id.
    """
    im = _within_side(decode_image(data, what, limits), what, limits)
    if im.format not in LOSSLESS:
        raise BadInput(f"{what}: label ids need a lossless image ({', '.join(LOSSLESS)}), got {im.format}")
    if im.mode in ("L", "P", "I", "I;16"):
        ids = np.asarray(im).astype(np.int64)
    elif im.mode in ("RGB", "RGBA"):
        rgb = np.asarray(to_mode(im, "RGB")).astype(np.int64)
        if not ((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])).all():
            raise BadInput(f"{what}: a label map is one channel of label ids (or gray R = G = B), got colours")
        ids = rgb[..., 0]
    else:
        raise BadInput(f"{what}: a label map is one channel of label ids, got PIL mode {im.mode}")
    if ids.min() < 0 or ids.max() >= n_labels:
        bad = int(ids.max()) if ids.max() >= n_labels else int(ids.min())
        raise BadInput(f"{what}: label {bad} is out of range: this model has labels 0..{n_labels - 1}")
    return ids


def labels_png(ids: np.ndarray) -> bytes:
    """Label ids (H, W) < 256 as a one-channel PNG (the form the page reads back into its painter)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(ids.astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def png_bytes(x: torch.Tensor, settings: dict | None = None) -> bytes:
    """A (C, H, W) tensor in [-1, 1] as PNG bytes; ``settings`` go into a ``vqforge`` text chunk as JSON."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", f"vqforge {__version__}")
    if settings is not None:
        info.add_text("vqforge", json.dumps(settings, sort_keys=True))
    buf = io.BytesIO()
    tensor_to_pil(x).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def palette(n: int) -> np.ndarray:
    """``n`` distinct RGB colours (n, 3) uint8, the same for every call (:func:`vqforge.labels.distinct_colours`)."""
    return distinct_colours(n)


def indices_picture(indices: torch.Tensor, n_codes: int, factor: int) -> torch.Tensor:
    """Codebook indices (h, w) as a picture (3, h*f, w*f) in [-1, 1]: one colour per code, one block per token."""
    colors = torch.from_numpy(palette(n_codes)).float() / 127.5 - 1.0  # (n, 3)
    img = colors[indices.cpu().long()].permute(2, 0, 1)  # (3, h, w)
    return img.repeat_interleave(factor, 1).repeat_interleave(factor, 2)
