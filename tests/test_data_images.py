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
from vqforge.train.stream import BatchStream, ResumableSampler

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


# ------------------------------------------------------------------------------------------ odd image files
def test_grayscale_rgba_16bit_and_palette_images_are_converted(tmp_path):
    from vqforge.imageio import read_image

    Image.fromarray(np.full((20, 20), 64, np.uint8), "L").save(tmp_path / "gray.png")
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)  # left half opaque red, right half fully transparent (stored as black)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.full((20, 20), 65535, np.uint16)).save(tmp_path / "sixteen.png")  # 16-bit white
    pal = Image.fromarray(np.full((20, 20), 2, np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 255, 255, 0, 128, 255] + [0] * 759)
    pal.save(tmp_path / "palette.png")
    files = [tmp_path / n for n in ("gray.png", "rgba.png", "sixteen.png", "palette.png")]
    assert Image.open(files[2]).mode.startswith("I")  # really 16-bit on disk
    ds = ImageDataset(files, size=16, crop="center")
    gray, rgba_t, sixteen, palette = (ds[i]["image"] for i in range(4))
    assert all(x.shape == (3, 16, 16) for x in (gray, rgba_t, sixteen, palette))
    assert torch.allclose(gray, torch.full_like(gray, 64 / 127.5 - 1), atol=1e-5)
    assert torch.allclose(rgba_t[:, 8, 2], torch.tensor([1.0, -1.0, -1.0]))  # red stays red
    assert torch.allclose(rgba_t[:, 8, 13], torch.ones(3))  # transparent -> white, not the black stored under it
    assert torch.allclose(sixteen, torch.ones_like(sixteen))  # 65535 -> 255, not clipped garbage
    assert torch.allclose(palette[:, 8, 8], torch.tensor([-1.0, 128 / 127.5 - 1, 1.0]), atol=1e-5)
    assert read_image(files[1], "L").mode == "L" and ImageDataset(files, 16, channels=1)[0]["image"].shape == (1, 16, 16)


def test_images_smaller_than_the_crop_are_resized_up_with_a_notice(tmp_path):
    small = _png(tmp_path / "small.png", 10, 12)
    with pytest.warns(UserWarning, match=r"small.png: 10x12 px is smaller than the 16 px crop; resized up"):
        x = ImageDataset([small], size=16, crop="random")[(0, 7)]["image"]
    assert x.shape == (3, 16, 16)


@pytest.mark.slow
def test_a_training_run_skips_and_counts_unreadable_images(tmp_path, one_thread):
    """Bad files among the training photos: each named in one warning, counted in the run's log, the run goes on."""
    import dataclasses
    import json

    from vqforge.train.vqgan import load_config, train_vqgan

    data = tmp_path / "photos"
    for i, f in enumerate(sorted(PHOTOS.iterdir())[:10]):
        (data / f.name).parent.mkdir(parents=True, exist_ok=True)
        (data / f.name).write_bytes(f.read_bytes())
    bad = _corrupt(data)
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "vqgan_tiny.yaml",
                      ["train.device=cpu", "train.image_size=16", "model.ddconfig.resolution=16", "train.batch_size=4",
                       "train.val_every=0", "train.preview_every=0", "train.checkpoint_every=0", "train.log_every=1"])
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, data=str(data), val_data=str(PHOTOS)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_vqgan(cfg, tmp_path / "run", max_steps=6, quiet=True)  # 2 epochs of 3 batches
    named = [str(w.message) for w in caught if "unreadable image skipped" in str(w.message)]
    assert sorted({m.split(":")[0] for m in named}) == sorted(str(b) for b in bad)
    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert result.step == 6 and result.skipped_images == 2
    assert [m for m in logs if "data/skipped_images" in m][-1]["data/skipped_images"] == 2


def test_one_resize_and_crop_rule_for_every_cut():
    """plan_crop: smallest side to the resize, the (square or whole) crop, then its centre at multiples of a
    downsampling factor (the boxes worked out by hand); too small for the factor is one line naming the file."""
    from vqforge.data.images import Crop, plan_crop

    # 50x30 -> smallest side 20: 33x20; the whole image cut to multiples of 8: 32x16 from (0, 2)
    assert plan_crop((50, 30), None, resize=20, multiple_of=8) == Crop((33, 20), (0, 2, 32, 18))
    # a centred 20 px square of the 33x20 image starts at x 6; its centre at multiples of 8 is 16 px from (8, 2)
    assert plan_crop((50, 30), 20, multiple_of=8) == Crop((33, 20), (8, 2, 24, 18))
    assert plan_crop((50, 30), 20) == Crop((33, 20), (6, 0, 26, 20))
    assert plan_crop((50, 30), None) == Crop((50, 30), (0, 0, 50, 30))  # no resize, no crop
    with pytest.raises(VQForgeError, match=r"^tiny.png: image of 5x6 px is smaller than the model's downsampling"):
        plan_crop((6, 5), None, source="tiny.png", multiple_of=8)
