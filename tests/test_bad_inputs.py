"""Every bad input is one line that names the file and the problem, and writes nothing.

Each case runs a command in-process (``vqforge.cli.main``) on tiny saved models, checks the exit status 2, a
single ``vqforge: error:`` line holding the file and the problem, and that the output does not exist (no
temporary folder left beside it either)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vqforge.api import save_model
from vqforge.cli import main
from vqforge.models.conditioning import ClassConfig, SegmentationConfig
from vqforge.models.vqgan import VQGAN

sys.path.insert(0, str(Path(__file__).parent))
from test_sampling import tiny_net, tiny_vq  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """f4 models trained at 16 px: a VQGAN, a class model (5 classes) and a segmentation model (5 labels)."""
    d = tmp_path_factory.mktemp("models")
    save_model(tiny_net(ClassConfig(n_classes=5, null_class=True)), d / "class")
    save_model(tiny_net(SegmentationConfig(n_labels=5, cond_stage=tiny_vq(5, ch_mult=(1, 2, 2)))), d / "seg")
    torch.manual_seed(0)
    save_model(VQGAN(tiny_vq()), d / "vq")
    return d


@pytest.fixture
def data(tmp_path):
    """Two photos (24x20) with segmentation maps (labels 0..4) in the same layout, an empty folder, a mask."""
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    (tmp_path / "maps").mkdir()
    (tmp_path / "empty").mkdir()
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"{name}.png")
        Image.fromarray(rng.integers(0, 5, (20, 24), dtype=np.uint8), "L").save(tmp_path / "maps" / f"{name}.png")
    mask = np.zeros((16, 16), np.uint8)
    mask[8:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path


def _refused(capsys, out: Path, *argv) -> str:
    """Run the command; it must fail with one line and leave ``out`` absent. Returns the message."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("vqforge: error: "), err
    assert not out.exists(), f"{out} was written"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "a temporary folder is left"
    return err


# ------------------------------------------------------------------------------------------ sample / complete
def test_segmentation_labels_beyond_the_models_label_count(models, data, capsys):
    bad = data / "seg7.png"
    Image.fromarray(np.full((16, 16), 7, np.uint8), "L").save(bad)
    msg = _refused(capsys, data / "out", "sample", "--model", models / "seg", "--cond", bad, "--out", data / "out")
    assert str(bad) in msg and "7" in msg and "5" in msg


def test_class_ids_out_of_range(models, data, capsys):
    for label in ("9", "-2"):
        msg = _refused(capsys, data / "out", "sample", "--model", models / "class", "--class", label,
                       "--out", data / "out")
        assert label in msg and "class" in msg


def test_size_not_a_multiple_of_the_downsampling_factor(models, data, capsys):
    msg = _refused(capsys, data / "out", "sample", "--model", models / "class", "--size", "30x32", "--out",
                   data / "out")
    assert "30x32" in msg and "multiple" in msg and "4" in msg
    msg = _refused(capsys, data / "tok", "encode", "--model", models / "vq", "--data", data / "photos", "--size", 18,
                   "--out", data / "tok", "--quiet")
    assert "18" in msg and "multiple" in msg and "4" in msg


def test_empty_condition_folder(models, data, capsys):
    msg = _refused(capsys, data / "out", "sample", "--model", models / "seg", "--cond", data / "empty", "--out",
                   data / "out")
    assert str(data / "empty") in msg


def test_model_of_the_wrong_kind(models, data, capsys):
    cases = [
        ("sample", "--model", models / "vq", "--out", data / "out"),
        ("complete", "--model", models / "vq", "--data", data / "photos" / "a.png", "--mask", data / "mask.png",
         "--out", data / "out"),
        ("evaluate", "nll", "--model", models / "vq", "--data", data / "empty", "--json", data / "out"),
        ("encode", "--model", models / "vq", "--cond-stage", models / "class", "--data", data / "photos",
         "--out", data / "out", "--quiet"),
    ]
    for argv in cases:
        msg = _refused(capsys, data / "out", *argv)
        model = argv[argv.index("--cond-stage") + 1] if "--cond-stage" in argv else argv[argv.index("--model") + 1]
        assert str(model) in msg and ("VQGAN" in msg or "transformer" in msg), msg


def test_mask_of_another_size_is_resized_with_a_notice(models, data, capsys):
    small = data / "mask8.png"
    Image.fromarray(np.array(Image.open(data / "mask.png").resize((8, 8), Image.NEAREST))).save(small)
    image = data / "in.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(image)
    rc = main(["complete", "--model", str(models / "class"), "--class", "1", "--data", str(image), "--mask",
               str(small), "--out", str(data / "out")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert str(small) in err and "8x8" in err and "16x16" in err  # the notice says what was resized to what
    assert (data / "out" / "mask.png").is_file()
    resized = np.asarray(Image.open(data / "out" / "mask.png").convert("L")) > 127
    assert resized[8:].all() and not resized[:8].any()  # the lower half, as in the small mask


def test_empty_mask(models, data, capsys):
    empty = data / "empty_mask.png"
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(empty)  # the size of photos/a.png
    msg = _refused(capsys, data / "out", "complete", "--model", models / "class", "--class", 1, "--data",
                   data / "photos" / "a.png", "--mask", empty, "--out", data / "out")
    assert str(empty) in msg and "empty" in msg


# ------------------------------------------------------------------------------------------ encode
def test_empty_data_folder(models, data, capsys):
    msg = _refused(capsys, data / "tok", "encode", "--model", models / "vq", "--data", data / "empty", "--out",
                   data / "tok", "--quiet")
    assert str(data / "empty") in msg and "no usable images" in msg


def test_image_and_map_of_different_sizes(models, data, capsys):
    Image.fromarray(np.zeros((10, 12), np.uint8), "L").save(data / "maps" / "b.png")
    msg = _refused(capsys, data / "tok", "encode", "--model", models / "seg", "--data", data / "photos",
                   "--cond-data", data / "maps", "--out", data / "tok", "--quiet")
    assert str(data / "maps" / "b.png") in msg and "10x12" in msg and "20x24" in msg


def test_map_labels_beyond_the_label_count(models, data, capsys):
    Image.fromarray(np.full((20, 24), 9, np.uint8), "L").save(data / "maps" / "a.png")
    msg = _refused(capsys, data / "tok", "encode", "--model", models / "seg", "--data", data / "photos",
                   "--cond-data", data / "maps", "--out", data / "tok", "--quiet")
    assert str(data / "maps" / "a.png") in msg and "9" in msg and "5" in msg


def test_missing_paired_map(models, data, capsys):
    (data / "maps" / "b.png").unlink()
    msg = _refused(capsys, data / "tok", "encode", "--model", models / "seg", "--data", data / "photos",
                   "--cond-data", data / "maps", "--out", data / "tok", "--quiet")
    assert str(data / "maps" / "b.png") in msg and "not found" in msg


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_images_in_the_data_are_skipped_as_training_skips_them(models, data, capsys, workers):
    """A truncated JPEG (what a failed download leaves) and a file that is no image at all: training skips them
    with a warning, so `encode` (step 2 of the README recipe) does too, naming each, instead of stopping."""
    import io

    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    (data / "photos" / "c.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])  # truncated
    (data / "photos" / "d.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning) as caught:
        rc = main([str(a) for a in ("encode", "--model", models / "vq", "--data", data / "photos", "--out",
                                    data / "tok", "--quiet", "--workers", workers)])
    err = capsys.readouterr().err
    assert rc == 0, err
    named = " ".join(str(w.message) for w in caught if "unreadable image skipped" in str(w.message))
    assert str(data / "photos" / "c.jpg") in named and str(data / "photos" / "d.png") in named
    assert "skipped 2 of 4" in err
    meta = json.loads((data / "tok" / "meta.json").read_text())
    rows = (data / "tok" / "files.txt").read_text().split()
    assert meta["n"] == 2 and sorted(Path(f).name for f in rows) == ["a.png", "b.png"]


def test_a_folder_of_only_unreadable_images_is_one_line(models, data, capsys):
    for name in ("a", "b"):
        (data / "photos" / f"{name}.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="unreadable image skipped"):
        msg = _refused(capsys, data / "tok", "encode", "--model", models / "vq", "--data", data / "photos", "--out",
                       data / "tok", "--quiet")
    assert "no usable images" in msg


# ------------------------------------------------------------------------------------------ training
def test_training_on_an_empty_folder(models, data, capsys):
    msg = _refused(capsys, data / "run", "train", "vqgan", "--config", Path(__file__).parents[1] / "configs" /
                   "vqgan_tiny.yaml", "--data", data / "empty", "--out", data / "run", "--quiet")
    assert str(data / "empty") in msg and "no usable images" in msg
    shutil.rmtree(data / "run", ignore_errors=True)


def test_reconstruct_takes_a_transformer_pipeline_by_its_first_stage(models, data, capsys):
    """`reconstruct --model landscapes` reconstructs with the pipeline's VQGAN (the same images as that VQGAN)."""
    import vqforge
    from vqforge.api import load_vqgan

    pipeline = vqforge.load(models / "seg")
    got = load_vqgan(models / "seg", "reconstruct")
    assert got is not pipeline and isinstance(got, VQGAN)
    assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(),
                                                 pipeline.first_stage.state_dict().values()))
    assert main(["reconstruct", "--model", str(models / "seg"), "--data", str(data / "photos"), "--out",
                 str(data / "rec"), "--size", "16"]) == 0
    assert sorted(p.name for p in (data / "rec").glob("*.png")) == ["a.png", "b.png"]
