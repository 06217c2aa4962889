"""Images with what conditions them: paired maps cut alike, crops with their coordinates, labels from folders.

* :class:`PairedCrops`: images (and their paired segmentation/depth maps) resized and cropped lazily by index,
  one centre crop per file or several random crops at several scales (``vqforge encode --crops N``);
* :class:`CoordCrops`: crops of large images with the coordinates of the whole image (coordinate conditioning);
* :class:`LabelledImages`: adds the class label of each file's folder to an image dataset's items;
* :func:`folder_labels` / :func:`read_label_file`: class labels from ImageFolder sub-folders or a label file.

Every crop goes through :func:`vqforge.data.images.plan_crop` (the one resize-and-crop rule).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..io import VQForgeError
from ..imageio import channels_mode, image_size, read_image
from .images import plan_crop, to_tensor



class PairedCrops:
    """Images as (C, size, size) tensors in [-1, 1], resized and cropped lazily by index.

    One centre crop per file, or ``crops`` random crops per file (item ``i`` is crop ``i % crops`` of file
    ``i // crops``) whose smallest side is first resized to a size drawn from ``[size, resize_max]``. The geometry
    of item ``i`` is drawn from a generator seeded by ``(seed, i)``, so an image and its paired map (``maps[k]``
    goes with ``files[k]``; read by ``condition``, a spatial conditioning mode) are cut alike: see :meth:`maps`.
    """

    def __init__(self, files: list[Path], size: int, channels: int = 3, maps: list[Path] | None = None,
                 condition=None, crops: int = 1, resize_max: int = 0, seed: int = 0):
        if crops < 1:
            raise VQForgeError(f"--crops must be >= 1, got {crops}")
        self.files, self.size, self.channels = list(files), size, channels
        self.map_files, self.condition = maps, condition
        self.crops, self.resize_max, self.seed = crops, resize_max, seed

    def __len__(self) -> int:
        return len(self.files) * self.crops

    def cut(self, img: Image.Image, i: int, resample: int = Image.BICUBIC) -> Image.Image:
        """Item ``i``'s crop of ``img`` (the file's image or its map)."""
        rng = random.Random(self.seed * 1_000_003 + i) if self.crops > 1 else None
        return plan_crop(img.size, self.size, rng, 0, self.resize_max).apply(img, resample)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = read_image(self.files[i // self.crops], channels_mode(self.channels))  # one line naming a bad file
        return to_tensor(self.cut(img, i))  # (C, H, W): gray as training reads it (PIL "L"), not a channel mean

    def maps(self) -> "_PairedMaps":
        """The paired maps' raw data, item by item, cut as the images."""
        if self.map_files is None or self.condition is None:
            raise ValueError("PairedCrops without maps")
        return _PairedMaps(self)


class _PairedMaps:
    def __init__(self, images: PairedCrops):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        imgs = self.images
        path = imgs.map_files[i // imgs.crops]
        cond = imgs.condition
        if not Path(path).is_file():
            raise VQForgeError(f"{path}: paired {cond.name} map not found")
        raw = cond.read_map(path)
        image = imgs.files[i // imgs.crops]
        image_wh = image_size(image)
        if raw.size != image_wh:  # cut alike only if they are alike: a map of another size is another picture
            raise VQForgeError(f"{path}: {cond.name} map is {raw.size[1]}x{raw.size[0]} px, its image {image} is "
                               f"{image_wh[1]}x{image_wh[0]} px (a paired map has its image's size)")
        m = imgs.cut(raw, i, cond.map_filter)
        return cond.raw_from_map(m, path)


class CoordCrops(torch.utils.data.Dataset):
    """Crops of large images with their coordinates: items ``{"image": (3, crop, crop), "coordinates": (1, crop,
    crop)}``.

    Each image is resized (smallest side) to ``full_size``; the coordinate map of the whole resized image
    (raster position / (H*W), as the original FacesHQ data) is cropped together with the image, so the
    condition tells the transformer where the crop lies. Keys may be ``(index, seed)`` pairs.
    """

    def __init__(self, files: list[Path], full_size: int, crop: int, random_crop: bool = True):
        if not files:
            raise VQForgeError("no images for coordinate crops")
        self.files, self.full_size, self.crop, self.random_crop = list(files), full_size, crop, random_crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key) -> dict[str, Any]:
        i, seed = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (int(key), 0)
        img = read_image(self.files[i])
        plan = plan_crop(img.size, self.crop, random.Random(seed) if self.random_crop else None, self.full_size)
        W, H = plan.size_wh
        left, top, right, bottom = plan.box
        coord = torch.arange(H * W, dtype=torch.float32).view(1, H, W) / (H * W)
        coord = coord[:, top:bottom, left:right].contiguous()  # (1, crop, crop)
        return {"image": to_tensor(plan.apply(img)), "coordinates": coord, "bad": -1}


def folder_labels(files: list[Path], root: str | Path) -> tuple[list[int], list[str]]:
    """Class labels from ImageFolder sub-folders: (label per file, sorted folder names)."""
    root = Path(root)
    if not root.is_dir():
        raise VQForgeError(f"{root}: labels from folders need an image folder (ImageFolder layout)")
    names = sorted({f.parent.relative_to(root).as_posix() for f in files})
    if "." in names:
        from ..config import notice

        flat = sum(f.parent == root for f in files)
        notice(f"{root}: --labels folders: {flat} image(s) lie directly in the folder, not in a class sub-folder, "
               f"and get one class named '.'" + ("" if len(names) > 1 else " (the only class)")
               + f"; put each class in its own sub-folder ({root / 'CLASS' / 'photo.jpg'}, ...)")
    index = {n: i for i, n in enumerate(names)}
    return [index[f.parent.relative_to(root).as_posix()] for f in files], names


def read_label_file(path: str | Path, files: list[Path], root: str | Path) -> tuple[list[int], list[str]]:
    """Class labels from a file of ``relative/path label`` lines: (label per file, label names).

    Names that are all digits sort numerically and come first. Raises VQForgeError naming the line or the file
    without a label.
    """
    path, root = Path(path), Path(root)
    table: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise VQForgeError(f"{path}: cannot read the label file ({e.strerror or e})") from None
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise VQForgeError(f"{path}:{n}: expected 'relative/path label'")
        table[parts[0]] = parts[1]
    names = sorted(set(table.values()), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    index = {name: i for i, name in enumerate(names)}
    labels = []
    for f in files:
        rel = f.relative_to(root).as_posix() if root.is_dir() else f.name
        if rel not in table:
            raise VQForgeError(f"{path}: no label for {rel}")
        labels.append(index[table[rel]])
    return labels, names


class LabelledImages(torch.utils.data.Dataset):
    """Adds ``label`` (the index of the file's folder among ``names``) to the items of an image dataset that has
    ``files`` (e.g. :class:`~vqforge.data.images.ImageDataset`)."""

    def __init__(self, ds, names: list[str], root: str | Path):
        self.ds, self.index = ds, {n: i for i, n in enumerate(names)}
        root = Path(root)
        self.labels = [self.index[f.parent.relative_to(root).as_posix()] for f in ds.files]

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        item = self.ds[key]
        i = int(key[0]) if isinstance(key, (tuple, list)) else int(key)
        item["label"] = torch.tensor(self.labels[i])
        return item

