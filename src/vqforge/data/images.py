"""Image datasets for first-stage (VQGAN) training: folders, file lists or globs of photos.

* :func:`find_images` turns a path into a sorted list of image files: a folder (searched recursively), a
  ``.txt`` file list (one path a line, relative to the list's folder; blank lines and ``#`` comments ignored),
  or a glob pattern (``photos/**/*.jpg``).
* :class:`ImageDataset` resizes the smallest side to ``size``, crops ``size x size`` (random or center),
  optionally flips horizontally, and returns ``{"image": (3, size, size) float in [-1, 1], "bad": int}``.
  Unreadable or corrupt files are skipped lazily: the item is replaced by the next readable file and
  ``bad`` is the index of the unreadable file it replaced (-1 when none); the training loop collects the
  distinct ones (:class:`SkipCounter`) and reports the count. A warning names each bad file once per
  process. A long run never crashes on a bad file.
* :func:`split_files` makes a deterministic train/val split when no separate validation data is given.
* :func:`plan_crop` is the one resize-and-crop rule (smallest side, then a random or centre crop, then
  multiples of a downsampling factor); :func:`load_image_tensor`, :func:`image_batches`, :func:`read_pair`,
  the datasets here and in :mod:`vqforge.data.paired` all cut through it.

Keys may be plain indices or ``(index, sample_seed)`` pairs (from
:class:`vqforge.train.stream.ResumableSampler` with ``with_seeds=True``): the crop and flip are then drawn
from a generator seeded by ``sample_seed``, so augmentations do not depend on worker processes or resumes.
"""

from __future__ import annotations

import glob as _glob
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from ..imageio import channels_mode, pil_to_tensor, read_image
from ..io import VQForgeError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm"}


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def find_images(path: str | Path) -> list[Path]:
    """The image files named by ``path``: a folder (recursive), a ``.txt`` file list, or a glob pattern.

    Raises :class:`VQForgeError` naming ``path`` when it does not exist or holds no image files.
    """
    text = str(path)
    p = Path(path)
    if any(ch in text for ch in "*?[") and not p.exists():
        files = sorted(Path(f) for f in _glob.glob(text, recursive=True) if _is_image(Path(f)) and Path(f).is_file())
        what = "glob pattern matches"
    elif p.is_dir():
        files = sorted(f for f in p.rglob("*") if _is_image(f) and f.is_file())
        what = "folder contains"
    elif p.is_file() and p.suffix.lower() == ".txt":
        files = []
        for line in p.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                f = Path(line)
                files.append(f if f.is_absolute() else p.parent / f)
        what = "file list names"
    elif p.is_file() and _is_image(p):
        files = [p]
        what = "file is"
    elif p.exists():
        raise VQForgeError(f"{path}: not an image folder, a .txt file list, an image or a glob pattern")
    else:
        raise VQForgeError(f"{path}: no such file or directory")
    if not files:
        raise VQForgeError(f"{path}: no usable images (the {what} no image files; "
                           f"extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def split_files(files: list[Path], val_fraction: float = 0.05, seed: int = 0, min_val: int = 1,
                max_val: int = 1000) -> tuple[list[Path], list[Path]]:
    """A deterministic (train, val) split of ``files``: a seeded shuffle, the first ``k`` go to val.

    ``k = clamp(round(val_fraction * n), min_val, max_val)``, always leaving at least one training file.
    """
    n = len(files)
    if n < 2:
        raise VQForgeError(f"{files[0] if files else '<data>'}: need at least 2 images to hold out a validation "
                           f"split (or pass --val-data)")
    k = min(max(int(round(val_fraction * n)), min_val), max_val, n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val = sorted(files[i] for i in order[:k])
    train = sorted(files[i] for i in order[k:])
    return train, val


@dataclass(frozen=True)
class Crop:
    """One resize-and-crop: resize the image to ``size_wh`` (w, h), then cut ``box`` (left, top, right, bottom).

    The same :class:`Crop` applied to an image and to its paired map (with another filter) cuts them alike.
    """

    size_wh: tuple[int, int]
    box: tuple[int, int, int, int]

    def apply(self, img: Image.Image, resample: int = Image.BICUBIC) -> Image.Image:
        if img.size != self.size_wh:
            img = img.resize(self.size_wh, resample)
        return img.crop(self.box)


def size_multiple(text: str) -> float | None:
    """N of a relative size 'Nx' (N times a size the command knows: the trained size, --size), or None when
    ``text`` is not of that form."""
    t = text.strip().lower()
    if not t.endswith("x"):
        return None
    try:
        return float(t[:-1])
    except ValueError:
        return None


def plan_crop(wh: tuple[int, int], size: int | None, rng: random.Random | None = None, resize: int = 0,
              resize_max: int = 0, source: str | Path | None = None, multiple_of: int = 1) -> Crop:
    """Where a crop of an image of ``wh`` = (w, h) lies: the one resize-and-crop rule.

    The smallest side is resized to ``resize`` (default ``size``; with ``rng`` and ``resize_max`` larger, drawn
    from ``[resize, resize_max]``: several scales), then a ``size x size`` crop is cut, random (drawn from
    ``rng``) or, with ``rng`` None, the centre one; ``size`` None keeps the whole resized image (``resize`` 0:
    the image as it is). ``multiple_of``: the crop's centre is then cut down to multiples of it (a model's
    downsampling factor). An image smaller than the crop is resized up (with ``source``, a notice names it
    once); one smaller than ``multiple_of`` is an error naming ``source``.
    """
    w, h = wh
    short = max(resize, size or 0)
    if rng is not None and resize_max > short:
        short = rng.randint(short, resize_max)
    if size and min(w, h) < size and source is not None:
        _notice_once(f"{source}: {w}x{h} px is smaller than the {size} px crop; resized up")
    scale = short / min(w, h) if short else 1.0
    if scale != 1.0:
        w, h = max(short, round(w * scale)), max(short, round(h * scale))
    cw, ch = (size, size) if size else (w, h)
    if rng is not None:
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    else:
        left, top = (w - cw) // 2, (h - ch) // 2
    if multiple_of > 1:  # the centre of the crop, at multiples of the factor
        mw, mh = cw // multiple_of * multiple_of, ch // multiple_of * multiple_of
        if mw == 0 or mh == 0:
            raise VQForgeError(f"{source or 'image'}: image of {ch}x{cw} px is smaller than the model's "
                               f"downsampling factor {multiple_of}")
        left, top, cw, ch = left + (cw - mw) // 2, top + (ch - mh) // 2, mw, mh
    return Crop((w, h), (left, top, left + cw, top + ch))


def resize_crop(img: Image.Image, size: int, crop: Literal["random", "center"], rng: random.Random,
                resize: int = 0, resize_max: int = 0, resample: int = Image.BICUBIC,
                source: str | Path | None = None) -> Image.Image:
    """Resize so the smallest side is ``resize`` (default ``size``), then crop ``size x size`` (see
    :func:`plan_crop`; ``rng`` is used for random crops only). ``resample``: the PIL filter (bicubic for
    photos, nearest for label maps, bilinear for depth)."""
    return plan_crop(img.size, size, rng if crop == "random" else None, resize, resize_max, source).apply(img, resample)


def read_pair(image_path: str | Path, mask_path: str | Path, size: tuple[int, int], exact: bool = False,
              channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """An image (channels, H, W) in [-1, 1] and its mask (H, W) bool (white, > 127, is True), cut alike.

    ``exact``: both resized to ``size`` (H, W); else resized (smallest side) and centre-cropped to it (a square
    ``size``, the trained size). A mask of another size than the image is first resized to it (nearest
    neighbour), with a notice.
    """
    img, mask = read_image(image_path, channels_mode(channels)), read_image(mask_path, mode="L")
    if mask.size != img.size:
        import sys

        print(f"vqforge: {mask_path}: mask is {mask.size[1]}x{mask.size[0]} px, resized to its image's "
              f"{img.size[1]}x{img.size[0]} px", file=sys.stderr)
        mask = mask.resize(img.size, Image.NEAREST)
    if exact:
        img, mask = img.resize((size[1], size[0]), Image.BICUBIC), mask.resize((size[1], size[0]), Image.NEAREST)
    else:
        plan = plan_crop(img.size, size[0])
        img, mask = plan.apply(img), plan.apply(mask, Image.NEAREST)
    return to_tensor(img), torch.from_numpy(np.asarray(mask) > 127)


def load_image_tensor(path: str | Path, size: int | tuple[int, int] | None = None, multiple_of: int = 1,
                      channels: int = 3) -> torch.Tensor:
    """Read an image as (channels, H, W) in [-1, 1] (3: RGB, 1: gray; see :func:`vqforge.imageio.read_image`).

    ``size``: resize the smallest side to this (int) or the image to exactly (H, W). ``multiple_of``: then
    center-crop H and W down to a multiple of it (the model's downsampling factor). A file that is not an
    image, or one smaller than ``multiple_of``, is one error naming ``path``.
    """
    im = read_image(path, channels_mode(channels))
    if isinstance(size, tuple):
        im, size = im.resize((size[1], size[0]), Image.BICUBIC), None
    return pil_to_tensor(plan_crop(im.size, None, resize=size or 0, source=path, multiple_of=multiple_of).apply(im))


def image_batches(paths: list[Path], batch_size: int, size: int = 0, multiple_of: int = 1, channels: int = 3):
    """(B, channels, H, W) batches in [-1, 1] of the images at ``paths``: resized (smallest side) and centre-cropped to
    ``size`` x ``size``, or with ``size`` 0 each at its own size; then centre-cropped to a multiple of
    ``multiple_of`` (see :func:`batches_by_shape`)."""
    def crops():
        for p in paths:
            img = read_image(p, channels_mode(channels))
            yield to_tensor(plan_crop(img.size, size or None, source=p, multiple_of=multiple_of).apply(img))

    return batches_by_shape(crops(), batch_size)


def batches_by_shape(items, batch_size: int):
    """Stack consecutive tensors of one shape into batches of up to ``batch_size``; a new shape starts a batch."""
    batch: list[torch.Tensor] = []
    for x in items:
        if batch and (len(batch) == batch_size or x.shape != batch[0].shape):
            yield torch.stack(batch)
            batch = []
        batch.append(x)
    if batch:
        yield torch.stack(batch)


_NOTICED: set[str] = set()


def _notice_once(message: str) -> None:
    if message not in _NOTICED:
        _NOTICED.add(message)
        warnings.warn(message, stacklevel=3)


#: PIL RGB or L -> float (3 or 1, H, W) in [-1, 1] (``x / 127.5 - 1``, as the original).
to_tensor = pil_to_tensor


class FileDataset(torch.utils.data.Dataset):
    """Items made from files, where an unreadable file never stops a run (see the module doc).

    Subclasses define :meth:`open` (read a file; raise on a bad one) and :meth:`item` (the item from what
    ``open`` returned and a seeded ``random.Random``). A bad file is named in one warning, remembered, and
    replaced by the next readable one; the item's ``bad`` entry is the index of the file it stands in for
    (-1 when none), which :class:`SkipCounter` collects. ``what`` names the files in messages.
    """

    what = "image"

    def __init__(self, files: list[Path], source: str | Path = "<data>"):
        if not files:
            raise VQForgeError(f"{source}: no usable {self.what}s")
        self.files, self.source = list(files), str(source)
        self.bad: set[int] = set()
        for i in range(len(self.files)):
            if self._try_open(i) is not None:
                break
        else:
            raise VQForgeError(f"{source}: no usable {self.what}s ({len(self.files)} files, none could be read)")

    def open(self, path: Path) -> Any:
        raise NotImplementedError

    def item(self, obj: Any, rng: random.Random, path: Path) -> dict[str, Any]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.files)

    def _try_open(self, i: int) -> Any:
        if i in self.bad:
            return None
        try:
            return self.open(self.files[i])
        except Exception as e:  # noqa: BLE001 - any reading or decoding failure means "skip this file"
            self.bad.add(i)
            warnings.warn(f"{self.files[i]}: unreadable {self.what} skipped ({type(e).__name__}: {str(e)[:80]})",
                          stacklevel=2)
            return None

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, (tuple, list)):
            index, seed = int(key[0]), int(key[1])
        else:
            index, seed = int(key), None
        rng = random.Random(seed) if seed is not None else random.Random(random.getrandbits(63))
        bad = -1
        n = len(self.files)
        for k in range(n):
            i = (index + k) % n
            obj = self._try_open(i)
            if obj is None:
                bad = i if bad < 0 else bad  # the first unreadable file this item stands in for
                continue
            return {**self.item(obj, rng, self.files[i]), "bad": bad}
        raise VQForgeError(f"{self.source}: no usable {self.what}s ({n} files, none could be read)")


class ImageDataset(FileDataset):
    """Photos as ``{"image": (channels, size, size) in [-1, 1], "bad": int}`` items (``bad``: see the module doc).

    files: image paths (see :func:`find_images`); size: output side; crop: ``random`` or ``center``;
    flip: random horizontal flips; resize: smallest side before cropping (0: ``size``, the original's
    behaviour; larger values crop patches at a finer scale); resize_max: with random crops, draw the
    smallest side from ``[resize, resize_max]`` per item (several scales); source: the path shown in
    errors; channels: 3 (RGB) or 1 (grayscale). Any image mode is converted (:func:`vqforge.imageio.read_image`). At
    construction the first readable file is located (so that zero usable images is an error naming
    ``source`` right away); later bad files are skipped lazily.
    """

    def __init__(self, files: list[Path], size: int = 256, crop: Literal["random", "center"] = "random",
                 flip: bool = False, source: str | Path = "<data>", resize: int = 0, resize_max: int = 0,
                 channels: int = 3):
        self.size, self.crop, self.flip = size, crop, flip
        self.resize, self.resize_max, self.channels = resize, resize_max, channels
        super().__init__(files, source)

    @classmethod
    def from_path(cls, path: str | Path, **kwargs: Any) -> "ImageDataset":
        """A dataset of every image that ``path`` names (folder, file list or glob)."""
        return cls(find_images(path), source=path, **kwargs)

    def open(self, path: Path) -> Image.Image:
        return read_image(path, channels_mode(self.channels))

    def item(self, img: Image.Image, rng: random.Random, path: Path) -> dict[str, Any]:
        img = resize_crop(img, self.size, self.crop, rng, self.resize, self.resize_max, source=path)
        if self.flip and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return {"image": to_tensor(img)}


class SkipCounter:
    """Distinct unreadable files seen in batches (``batch["bad"]``), across worker processes."""

    def __init__(self) -> None:
        self.bad: set[int] = set()

    def update(self, batch: dict[str, Any]) -> int:
        """Record a batch; returns how many new bad files it revealed."""
        b = batch.get("bad")
        if not isinstance(b, torch.Tensor):
            return 0
        before = len(self.bad)
        self.bad.update(int(i) for i in b.tolist() if i >= 0)
        return len(self.bad) - before

    def __len__(self) -> int:
        return len(self.bad)
