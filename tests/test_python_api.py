"""The Python front door: vqforge.load gives inference-ready models, vqforge.sample gives PIL images from the same
sampling path as `vqforge sample`, a transformer pipeline encodes images to indices like its first stage."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vqforge
from vqforge.api import save_model
from vqforge.cli import main
from vqforge.models.conditioning import ClassConfig, SegmentationConfig

sys.path.insert(0, str(Path(__file__).parent))
from test_sampling import tiny_net, tiny_vq  # noqa: E402

NAMES = ("tee", "trouser", "pullover", "dress", "coat")


@pytest.fixture(scope="module")
def class_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("class_model")
    save_model(tiny_net(ClassConfig(n_classes=5, null_class=True, names=NAMES)), d,
               extra={"sampling": {"top_k": 7, "cfg": 1.5}})
    return d


@pytest.fixture(scope="module")
def seg_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("seg_model")
    save_model(tiny_net(SegmentationConfig(n_labels=5, cond_stage=tiny_vq(5, ch_mult=(1, 2, 2)))), d)
    return d


def test_loaded_models_are_for_inference_with_their_card(class_model):
    model = vqforge.load(class_model)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.card["sampling"] == {"top_k": 7, "cfg": 1.5}
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    idx = model.encode_to_indices(x)  # a transformer pipeline encodes like its first stage
    assert idx.shape == (2, 4, 4) and torch.equal(idx, model.first_stage.encode_to_indices(x))
    assert torch.equal(model.decode_indices(idx), model.first_stage.decode_indices(idx))


def test_sample_returns_the_images_vqforge_sample_writes(class_model, tmp_path):
    images = vqforge.sample(class_model, n=3, class_="dress", seed=5)
    assert [im.size for im in images] == [(16, 16)] * 3 and all(isinstance(im, Image.Image) for im in images)
    model = vqforge.load(class_model)
    again = vqforge.sample(model, n=3, class_=3, seed=5)  # a loaded model, the class by id: the same images
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, again))
    # the command line with the same seed and the card's settings writes the same pixels
    assert main(["sample", "--model", str(class_model), "--class", "dress", "--num", "3", "--seed", "5",
                 "--quiet", "--out", str(tmp_path / "s")]) == 0
    for k, im in enumerate(images):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "s" / f"{k:05d}.png")), np.asarray(im))
    other = vqforge.sample(model, n=1, class_="dress", seed=6, cfg=0, size=(16, 32))
    assert other[0].size == (32, 16) and not np.array_equal(np.asarray(other[0])[:, :16], np.asarray(images[0]))
    with pytest.raises(vqforge.VQForgeError, match="pants"):
        vqforge.sample(model, class_="pants")


def test_sample_takes_a_map_as_a_file_or_in_memory(seg_model, tmp_path):
    ids = np.zeros((16, 16), np.uint8)
    ids[8:] = 3
    Image.fromarray(ids).save(tmp_path / "map.png")
    from_file = vqforge.sample(seg_model, n=2, cond=tmp_path / "map.png", seed=1)
    from_array = vqforge.sample(seg_model, n=2, cond=ids, seed=1)
    from_tensor = vqforge.sample(seg_model, n=2, cond=torch.from_numpy(ids.astype(np.int64)), seed=1)
    for a, b, c in zip(from_file, from_array, from_tensor):
        assert np.array_equal(np.asarray(a), np.asarray(b)) and np.array_equal(np.asarray(a), np.asarray(c))
    with pytest.raises(vqforge.VQForgeError, match="label"):
        vqforge.sample(seg_model, cond=np.full((16, 16), 9, np.uint8))


def test_readme_python_sampling_example_runs(tmp_path, monkeypatch):
    """The README's Python block, as written, on the bundled models (from the checkout's root)."""
    from vqforge import bundled

    if any(bundled.find(n) is None for n in ("fashion", "landscapes")):
        pytest.skip("bundled models not installed")
    repo = Path(__file__).resolve().parents[1]
    text = (repo / "README.md").read_text()
    block = next(b.split("\n", 1)[1] for b in text.split("```python")[1:] if "vqforge.sample(" in b).split("```")[0]
    cond = "src/vqforge/demo_assets/segmentations/"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block.replace(cond, f"{repo}/{cond}"), "README.md", "exec"), scope)  # noqa: S102
    assert len(scope["sneakers"]) == 4 and scope["sneakers"][0].size == (28, 28) and scope["sneakers"][0].mode == "L"
    assert (tmp_path / "sneaker.png").is_file() and scope["lake"].size == (128, 64)
    assert scope["idx"].shape == (1, 7, 7)


def test_readme_table_of_the_bundled_models_matches_their_cards():
    """The README's sizes and CPU hours are the shipped models' (parameters counted, hours from the cards)."""
    import re

    from vqforge import bundled

    if any(bundled.find(n) is None for n in ("fashion", "landscapes")):
        pytest.skip("bundled models not installed")
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in ("fashion", "landscapes"):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
        model = vqforge.load(name)
        millions = [round(sum(p.numel() for p in m.parameters()) / 1e6, 1)
                    for m in (model.transformer, model.first_stage, model.cond_stage) if m is not None]
        assert [float(v) for v in re.findall(r"([\d.]+) M", row)] == millions, row
        hours = float(re.search(r"total ([\d.]+) min", model.card["wall_time"]).group(1)) / 60
        assert abs(float(re.search(r"([\d.]+) CPU hours", row).group(1)) - hours) <= 0.5, (row, hours)
