"""The README's "Train your own, end to end" recipe, run as written: its exact commands, taken from README.md, in a
shell, on the bundled photos sorted into class sub-folders, at the tiny size the README names for a quick check
(``--max-steps N`` on both train commands). Then: a transformer trained on crops samples at 2x its trained size and
2x its area without turning into repeated rows."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import PYTHON, cli_env, needs_fid_weights
from PIL import Image

from vqforge.config.presets import resolve_config

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO / "src" / "vqforge" / "demo_assets" / "photos"
#: class sub-folders for the bundled photos (by their source), named as the README's examples name them
CLASSES = {"forest": "sflckr_", "street": "coco_", "animals": "drin_"}
SECTION = "## Train your own, end to end"


def readme_recipe() -> tuple[list[str], str]:
    """The recipe section's commands (continuation lines joined, comments dropped) and the quick-check flag it
    names for the train commands."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [line.strip() for line in block.replace("\\\n", " ").splitlines()]
    commands = [" ".join(c.split()) for c in commands if c and not c.startswith("#")]
    quick = re.search(r"add `(--max-steps \d+)` to both `train` commands", section)
    assert quick, "the README recipe no longer names its quick-check size (add `--max-steps N` to both ...)"
    return commands, quick.group(1)


def _home(root: Path) -> Path:
    """A home folder with ~/photos/<class>/*.jpg, photo.jpg and mask.png for `complete` (no configs/: the
    README names shipped configs)."""
    for name, prefix in CLASSES.items():
        (root / "photos" / name).mkdir(parents=True)
        for p in sorted(PHOTOS.glob(prefix + "*")):
            shutil.copy(p, root / "photos" / name / p.name)
    photo = sorted(PHOTOS.glob("sflckr_*"))[0]
    shutil.copy(photo, root / "photo.jpg")
    w, h = Image.open(photo).size
    mask = np.zeros((h, w), np.uint8)
    mask[h // 2:, :] = 255  # resample the lower half
    Image.fromarray(mask).save(root / "mask.png")
    shim = root / "bin" / "vqforge"  # `vqforge` = this checkout's sources under this interpreter
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{PYTHON}" -m vqforge "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return root


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """Run every README command in order in a shell (HOME = a folder holding ~/photos); returns the folder and
    each command's completed process."""
    commands, quick = readme_recipe()
    home = _home(tmp_path_factory.mktemp("home"))
    env = cli_env()
    # one thread: two on a busy 2-core machine stall on each other (100x slower steps)
    env.update(HOME=str(home), PATH=f"{home / 'bin'}{os.pathsep}{env['PATH']}", OMP_NUM_THREADS="1")
    runs = {}
    for command in commands:
        if command.startswith("vqforge train "):
            command = f"{command} {quick}"
        r = subprocess.run(["bash", "-c", command], cwd=home, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0 and "Traceback" not in r.stderr, f"{command}\n{r.stdout}\n{r.stderr[-3000:]}"
        runs[command] = r
    return home, runs


def _images(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB"), np.float64) / 255 for p in sorted(folder.glob("0*.png"))]


def _row_difference_variance(images: list[np.ndarray]) -> float:
    """Mean over images of the variance of the differences between neighbouring pixel rows."""
    return float(np.mean([np.var(np.diff(x, axis=0)) for x in images]))


def test_readme_names_cpu_sized_configs_and_gpu_sized_ones_beside_them():
    commands, _ = readme_recipe()
    configs = [c.split("--config ")[1].split()[0] for c in commands if "--config" in c]
    assert configs == ["vqgan_cpu", "transformer_cpu"]  # shipped configs, by name: no checkout needed
    text = (REPO / "README.md").read_text()
    for name in configs:
        gpu = name.replace("_cpu", "_gpu")
        assert resolve_config(name).is_file() and resolve_config(gpu).is_file() and f"`{gpu}`" in text


@needs_fid_weights
def test_readme_recipe_runs_as_written(recipe):
    """Every command succeeds; each step shows progress with the time left; the outputs are where the README says,
    at the trained size by default and at twice it with --size 2x; nll says which rows it scored."""
    home, runs = recipe
    for command, r in runs.items():
        if command.startswith(("vqforge train", "vqforge encode", "vqforge sample", "vqforge complete")):
            assert re.search(r"<\d+:\d\d", r.stderr), f"no progress with time left: {command}\n{r.stderr[-2000:]}"
    assert (home / "runs/vqgan/checkpoints/last.pt").is_file()
    assert (home / "runs/gpt/checkpoints/best.pt").is_file() and (home / "runs/gpt/checkpoints/last.pt").is_file()
    tokens = json.loads((home / "tokens/meta.json").read_text())
    assert sorted(tokens["label_names"]) == sorted(CLASSES)
    samples, large = _images(home / "out/samples"), _images(home / "out/large")
    assert len(samples) == 8 and {x.shape for x in samples} == {(32, 32, 3)}  # the trained size
    assert len(large) == 2 and {x.shape for x in large} == {(64, 64, 3)}  # --size 2x
    settings = json.loads((home / "out/large/settings.json").read_text())
    assert settings["sliding_window"] and settings["classes"] == ["forest"]
    assert len(_images(home / "out/completed")) == 1
    fid = json.loads((home / "fid.json").read_text())
    assert fid["n_samples"] == 8  # only the files `sample` wrote
    nll = json.loads((home / "nll.json").read_text())
    assert nll["split"] == "held-out"


@needs_fid_weights
def test_samples_larger_than_trained_are_not_repeated_rows(recipe):
    """A transformer trained on crops samples at 2x its trained size (README) and at 2x its area (32x64 px, run
    here); the variance of neighbouring-row differences stays within a factor 3 of trained-size samples' (horizontal
    streaks, rows repeating down the image, drive it towards 0)."""
    home, _ = recipe
    env = cli_env()
    env["OMP_NUM_THREADS"] = "1"
    r = subprocess.run([PYTHON, "-m", "vqforge", "sample", "--model", str(home / "runs/gpt"), "--class", "forest",
                        "--size", "32x64", "--num", "2", "--quiet", "--out", str(home / "out/wide")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    reference = _row_difference_variance(_images(home / "out/samples"))
    assert reference > 1e-4, "trained-size samples are flat: nothing to compare with"
    for name, shape in (("large", (64, 64, 3)), ("wide", (32, 64, 3))):
        images = _images(home / "out" / name)
        assert {x.shape for x in images} == {shape}
        ratio = _row_difference_variance(images) / reference
        assert 1 / 3 < ratio < 3, (name, ratio)
