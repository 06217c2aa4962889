"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (or any folder of the four idx files).

The files are ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` in ``/usr/share/datasets/fashion-mnist``
(override with ``root`` or the ``VQFORGE_FASHION_MNIST`` environment variable). Images are 28x28
grayscale uint8; labels are the 10 classes in :data:`CLASS_NAMES`.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..io import VQForgeError

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")
_PREFIX = {"train": "train", "test": "t10k"}


def fashion_mnist_root(root: str | Path | None = None) -> Path:
    """The folder holding the idx files (argument, ``$VQFORGE_FASHION_MNIST``, or Debian's location)."""
    return Path(root or os.environ.get("VQFORGE_FASHION_MNIST") or DEFAULT_ROOT)


def available(root: str | Path | None = None) -> bool:
    """True when the four files are present."""
    r = fashion_mnist_root(root)
    return all((r / f"{p}-{k}-ubyte.gz").is_file() for p in _PREFIX.values() for k in ("images-idx3", "labels-idx1"))


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    if not path.is_file():
        raise VQForgeError(f"{path}: Fashion-MNIST file not found (install Debian's dataset-fashion-mnist "
                           f"or set VQFORGE_FASHION_MNIST)")
    try:
        data = gzip.open(path, "rb").read()
    except OSError as e:
        raise VQForgeError(f"{path}: cannot read ({e})") from None
    head = np.frombuffer(data[:4 + 4 * ndim], dtype=">u4")
    if int(head[0]) != magic:
        raise VQForgeError(f"{path}: not an idx file (magic {int(head[0]):#x}, expected {magic:#x})")
    shape = tuple(int(s) for s in head[1:])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise VQForgeError(f"{path}: truncated ({body.size} bytes of {int(np.prod(shape))})")
    return body.reshape(shape)


def load_fashion_mnist(split: Literal["train", "test"] = "train", root: str | Path | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of ``split``."""
    r, p = fashion_mnist_root(root), _PREFIX[split]
    images = _read_idx(r / f"{p}-images-idx3-ubyte.gz", 0x00000803, 3)
    labels = _read_idx(r / f"{p}-labels-idx1-ubyte.gz", 0x00000801, 1).astype(np.int64)
    if len(images) != len(labels):
        raise VQForgeError(f"{r}: {split} has {len(images)} images but {len(labels)} labels")
    return images, labels


def to_model_images(images: np.ndarray, size: int = 28, channels: int = 1) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, channels, size, size) in [-1, 1] (area resize when size < 28, else
    zero padding around the image, e.g. 28 -> 32)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1.0)[:, None]  # (N, 1, 28, 28)
    if size < x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="area")
    elif size > x.shape[-1]:
        p = size - x.shape[-1]
        x = F.pad(x, (p // 2, p - p // 2, p // 2, p - p // 2), value=-1.0)
    return x.expand(-1, channels, -1, -1).contiguous() if channels != 1 else x


class FashionMNIST(torch.utils.data.Dataset):
    """``{"image": (channels, size, size) in [-1, 1], "label": int}`` items of Fashion-MNIST."""

    def __init__(self, split: Literal["train", "test"] = "train", size: int = 28, channels: int = 1,
                 limit: int | None = None, root: str | Path | None = None):
        images, labels = load_fashion_mnist(split, root)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        self.images = to_model_images(images, size, channels)
        self.labels = torch.from_numpy(labels)
        self.label_names = list(CLASS_NAMES)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key) -> dict:
        i = int(key[0]) if isinstance(key, (tuple, list)) else int(key)
        return {"image": self.images[i], "label": self.labels[i]}
