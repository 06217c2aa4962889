"""Image datasets: sources (folder, list, glob), transforms, corrupt-file skipping, empty-data errors, splits."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vqforge.data.images import ImageDataset, SkipCounter, find_images, split_files
from vqforge.io import VQForgeError
from vqforge.train.common import BatchStream, ResumableSampler

PHOTOS = Path(__file__).resolve().parents[1] / "src" / "vqforge" / "demo_assets" / "photos"


def _png(path: Path, w: int = 40, h: int = 30, value: int | None = None) -> Path:
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if value is None else np.full((h, w, 3), value, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _corrupt(folder: Path) -> list[Path]:
    """A garbage .jpg and a truncated .png."""
    folder.mkdir(parents=True, exist_ok=True)
    bad1 = folder / "garbage.jpg"
    bad1.write_bytes(b"this is not an image at all" * 10)
    good = _png(folder / "tmp_full.png", 64, 64)
    data = good.read_bytes()
    good.unlink()
    bad2 = folder / "truncated.png"
    bad2.write_bytes(data[: len(data) // 3])
    return [bad1, bad2]


def test_sources_folder_list_glob(tmp_path):
    a = _png(tmp_path / "imgs" / "a.png")
    b = _png(tmp_path / "imgs" / "sub" / "b.jpg")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    assert find_images(tmp_path / "imgs") == sorted([a, b])
    lst = tmp_path / "list.txt"
    lst.write_text("# my images\nimgs/a.png\n\nimgs/sub/b.jpg\n")
    assert find_images(lst) == [tmp_path / "imgs" / "a.png", tmp_path / "imgs" / "sub" / "b.jpg"]
    assert find_images(str(tmp_path / "imgs" / "**" / "*.jpg")) == [b]


def test_missing_and_empty_sources_name_the_path(tmp_path):
    with pytest.raises(VQForgeError, match="no such file"):
        find_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VQForgeError, match=r"empty: no usable images"):
        find_images(tmp_path / "empty")
    with pytest.raises(VQForgeError, match="no usable images"):
        find_images(str(tmp_path / "empty" / "*.png"))


def test_all_corrupt_is_an_error_naming_the_path(tmp_path):
    _corrupt(tmp_path / "bad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(VQForgeError, match=r"bad: no usable images \(2 files, none could be read\)"):
            ImageDataset.from_path(tmp_path / "bad", size=16)


def test_transform_range_shape_and_determinism():
    ds = ImageDataset.from_path(PHOTOS, size=32, crop="random", flip=True)
    item = ds[(3, 1234)]
    x = item["image"]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert -1.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05
    assert item["bad"] == -1
    assert torch.equal(ds[(3, 1234)]["image"], x)  # same seed -> same crop and flip
    assert not torch.equal(ds[(3, 99)]["image"], x)
    center = ImageDataset.from_path(PHOTOS, size=32, crop="center")
    assert torch.equal(center[(3, 1)]["image"], center[(3, 2)]["image"])


def test_smallest_side_resize_keeps_whole_short_side(tmp_path):
    # left half black, right half white, 80x40: after resizing the short side to 20 a center crop (20x20)
    # sees both halves, a random crop at the far left sees only black.
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, 40:] = 255
    Image.fromarray(arr).save(tmp_path / "half.png")
    x = ImageDataset.from_path(tmp_path / "half.png", size=20, crop="center")[0]["image"]  # (3, 20, 20)
    assert x[:, :, 0].max() == -1.0 and x[:, :, -1].min() == 1.0


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_images_are_skipped_and_counted(tmp_path, workers):
    for i in range(6):
        _png(tmp_path / "data" / f"img{i}.png")
    _corrupt(tmp_path / "data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = ImageDataset.from_path(tmp_path / "data", size=16)
        assert len(ds) == 8
        stream = BatchStream(ds, 2, ResumableSampler(len(ds), seed=0, with_seeds=True), workers=workers)
        counter = SkipCounter()
        for _ in range(2 * stream.batches_per_epoch):  # two epochs: every file visited twice
            batch = next(stream)
            assert batch["image"].shape == (2, 3, 16, 16) and torch.isfinite(batch["image"]).all()
            counter.update(batch)
    assert len(counter) == 2  # two distinct bad files, however often they were hit
    assert {ds.files[i].name for i in counter.bad} == {"garbage.jpg", "truncated.png"}


def test_corrupt_file_warns(tmp_path):
    _png(tmp_path / "d" / "a.png")
    _corrupt(tmp_path / "d")
    ds = ImageDataset.from_path(tmp_path / "d", size=16)
    with pytest.warns(UserWarning, match="unreadable image skipped"):
        for i in range(len(ds)):
            ds[i]


def test_split_is_deterministic_and_disjoint():
    files = find_images(PHOTOS)
    train, val = split_files(files, 0.2, seed=23)
    assert (train, val) == split_files(files, 0.2, seed=23)
    assert not set(train) & set(val) and len(train) + len(val) == len(files)
    assert len(val) == round(0.2 * len(files))
    assert split_files(files, 0.2, seed=24)[1] != val
    with pytest.raises(VQForgeError, match="at least 2 images"):
        split_files(files[:1], 0.2)
