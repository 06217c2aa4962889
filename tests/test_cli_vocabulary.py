"""One flag vocabulary for the commands that are not trainers: --data --out --model --size --device --quiet --seed,
old spellings (--input, --output, --no-progress) working with a one-line notice, class names wherever class ids
are taken, and every mistake a one-line message with exit status 2 (the CLI run as a subprocess, no traceback)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from conftest import PYTHON, cli_env
from PIL import Image

from vqforge.api import save_model
from vqforge.cli import build_parser
from vqforge.models.conditioning import ClassConfig
from vqforge.models.vqgan import VQGAN

from test_sampling import tiny_net, tiny_vq

NAMES = ("cat", "dog", "fox")
#: Every non-training command and the vocabulary flags it takes.
VOCABULARY = {
    ("reconstruct",): ("--model", "--data", "--out", "--size", "--device", "--quiet"),
    ("encode",): ("--model", "--data", "--out", "--size", "--device", "--quiet", "--seed"),
    ("sample",): ("--model", "--out", "--size", "--device", "--quiet", "--seed"),
    ("complete",): ("--model", "--data", "--out", "--size", "--device", "--quiet", "--seed"),
    ("evaluate", "recon"): ("--model", "--data", "--size", "--device", "--quiet", "--seed"),
    ("evaluate", "samples"): ("--device", "--quiet", "--seed"),
    ("evaluate", "nll"): ("--model", "--data", "--device", "--quiet"),
    ("convert",): ("--out",),
}
OLD = ("--input", "--output", "--no-progress")


def _cli(*args, timeout=300):
    return subprocess.run([PYTHON, "-m", "vqforge", *map(str, args)], capture_output=True, text=True,
                          env=cli_env(), timeout=timeout)


def _notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("vqforge: ") and " is now " in line]


def _one_line_error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vqforge: error:"), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny f4 VQGAN (trained size 16) and a class-conditional transformer whose classes have names."""
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    vq = save_model(VQGAN(tiny_vq()), d / "vqgan")
    gpt = save_model(tiny_net(ClassConfig(n_classes=3, names=NAMES, null_class=True)), d / "gpt")
    photo = d / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)).save(photo)
    mask = np.zeros((20, 24), np.uint8)
    mask[10:] = 255
    Image.fromarray(mask).save(d / "mask.png")
    return {"vqgan": vq, "gpt": gpt, "photo": photo, "mask": d / "mask.png"}


def _help(command: tuple[str, ...]) -> str:
    parser = build_parser()
    for name in command:  # walk down the sub-command parsers
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[name]
    return parser.format_help()


@pytest.mark.parametrize("command", list(VOCABULARY), ids=" ".join)
def test_help_shows_the_vocabulary_and_hides_old_spellings(command):
    text = _help(command)
    for flag in VOCABULARY[command]:
        assert flag in text, f"{' '.join(command)} --help lacks {flag}"
    for flag in OLD:
        assert flag not in text, f"{' '.join(command)} --help shows the old spelling {flag}"


def test_old_spellings_work_with_one_notice_each(models, tmp_path):
    r = _cli("reconstruct", "--model", models["vqgan"], "--input", models["photo"], "--output", tmp_path / "rec",
             "--no-progress")
    assert r.returncode == 0, r.stderr
    assert sorted(_notes(r.stderr)) == ["vqforge: --input is now --data",
                                        "vqforge: --no-progress is now --quiet",
                                        "vqforge: --output is now --out"]
    assert (tmp_path / "rec" / "photo.png").is_file()
    assert "photo.png: PSNR" not in r.stdout  # --no-progress meant --quiet: no per-image lines


def test_new_spellings_class_names_and_recorded_classes(models, tmp_path):
    r = _cli("sample", "--model", models["gpt"], "--class", "dog", "fox", "--num", "3", "--out", tmp_path / "s",
             "--quiet", "--seed", "3", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert not _notes(r.stderr) and "Traceback" not in r.stderr
    assert "sample:" not in r.stderr  # --quiet: no progress bar
    s = json.loads((tmp_path / "s" / "settings.json").read_text())
    assert s["classes"] == ["dog", "fox"] and s["seed"] == 3
    assert [e.get("class_name") for e in s["samples"]] == ["dog", "fox", "dog"]
    assert [e["class"] for e in s["samples"]] == [1, 2, 1]

    # complete: the image (--data) at the trained size; without --class, the classes it cycled are recorded
    r = _cli("complete", "--model", models["gpt"], "--data", models["photo"], "--mask", models["mask"], "--num", "2",
             "--out", tmp_path / "c", "--quiet")
    assert r.returncode == 0, r.stderr
    c = json.loads((tmp_path / "c" / "settings.json").read_text())
    assert c["classes"] == ["cat", "dog"] and c["size"] == [16, 16] and c["input"] == str(models["photo"])


def test_mistakes_are_one_line(models, tmp_path):
    assert "device 'tpu'" in _one_line_error(_cli("sample", "--model", models["gpt"], "--out", tmp_path / "x",
                                                  "--device", "tpu"))
    assert "unknown class" in _one_line_error(_cli("sample", "--model", models["gpt"], "--class", "zebra",
                                                   "--out", tmp_path / "x"))
    assert not (tmp_path / "x").exists()
    # a missing required flag is named by its new spelling (argparse's usage line, then one message)
    r = _cli("reconstruct", "--model", models["vqgan"], "--data", models["photo"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith("the following arguments are required: --out")
    r = _cli("encode", "--model", models["vqgan"], "--data", tmp_path / "nothing", "--out", tmp_path / "tok",
             "--no-progress")
    assert _notes(r.stderr) == ["vqforge: --no-progress is now --quiet"]
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.strip().splitlines()[-1].startswith(
        "vqforge: error:")


def test_sizes_default_to_the_trained_size_and_read_as_multiples(models, tmp_path):
    """No --size means the trained size (16 px) in encode and evaluate recon; `sample --size 2x` is twice it (a
    sliding window); `encode --crops 3 --resize-max 2x` cuts 3 crops per image from up to 32 px; a size that is
    neither pixels nor a multiple is one line."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(photos / f"{i}.png")

    r = _cli("encode", "--model", models["vqgan"], "--data", photos, "--crops", "3", "--resize-max", "2x",
             "--out", tmp_path / "tok", "--quiet")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    meta = json.loads((tmp_path / "tok" / "meta.json").read_text())
    assert meta["image_size"] == [16, 16] and meta["n"] == 6

    r = _cli("evaluate", "recon", "--model", models["vqgan"], "--data", photos, "--no-fid", "--quiet",
             "--json", tmp_path / "recon.json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert json.loads((tmp_path / "recon.json").read_text())["size"] == 16

    r = _cli("sample", "--model", models["gpt"], "--size", "2x", "--num", "1", "--out", tmp_path / "big", "--quiet")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    s = json.loads((tmp_path / "big" / "settings.json").read_text())
    assert s["size"] == [32, 32] and s["sliding_window"]
    assert Image.open(tmp_path / "big" / "00000.png").size == (32, 32)

    assert "Nx for N times the trained size" in _one_line_error(
        _cli("sample", "--model", models["gpt"], "--size", "2y", "--out", tmp_path / "x"))
    assert "--resize-max '3y'" in _one_line_error(
        _cli("encode", "--model", models["vqgan"], "--data", photos, "--crops", "2", "--resize-max", "3y",
             "--out", tmp_path / "tok2"))
    assert not (tmp_path / "x").exists() and not (tmp_path / "tok2").exists()
