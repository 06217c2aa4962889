"""The command line's one-line warnings for inputs that run but would mislead: class labels from a flat folder, a
segmentation map of another label set, LPIPS weights that are missing (how to give their path), and the post-
training hint's `evaluate nll` (the README's form). `evaluate samples` on a few images: test_evaluate_small_sets."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import vqforge
from vqforge.cli import main
from vqforge.models.conditioning import SegmentationConfig
from vqforge.models.vqgan import VQGAN

sys.path.insert(0, str(Path(__file__).parent))
from test_sampling import tiny_net, tiny_vq  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def warnings_in(err: str, what: str) -> list[str]:
    lines = [x for x in err.splitlines() if what in x]
    assert lines, err
    return lines


def photos(root: Path, n: int = 3, size: int = 20) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(root / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def vq(tmp_path_factory):
    d = tmp_path_factory.mktemp("vq") / "vq"
    torch.manual_seed(0)
    vqforge.save_model(VQGAN(tiny_vq()).eval(), d)
    return d


def test_encode_labels_from_a_flat_folder_warns_in_one_line(vq, tmp_path, capsys):
    flat = photos(tmp_path / "flat")
    assert main(["encode", "--model", str(vq), "--data", str(flat), "--labels", "folders", "--size", "16",
                 "--out", str(tmp_path / "tok"), "--quiet"]) == 0
    (line,) = warnings_in(capsys.readouterr().err, "--labels folders")
    assert line.startswith("vqforge: ") and "one class named '.'" in line and "sub-folder" in line
    # class sub-folders: no warning
    for name in ("forest", "street"):
        photos(tmp_path / "sorted" / name, 2)
    assert main(["encode", "--model", str(vq), "--data", str(tmp_path / "sorted"), "--labels", "folders",
                 "--size", "16", "--out", str(tmp_path / "tok2"), "--quiet"]) == 0
    assert "--labels folders" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def coco_model(tmp_path_factory):
    """A segmentation model over COCO-Stuff's 182 labels, with the bundled landscapes' card names and common labels."""
    card = yaml.safe_load((REPO / "src/vqforge/bundled/landscapes/model.yaml").read_text())["extra"]
    d = tmp_path_factory.mktemp("coco") / "seg"
    net = tiny_net(SegmentationConfig(n_labels=182, cond_stage=tiny_vq(182, ch_mult=(1, 2, 2))))
    vqforge.save_model(net, d, extra={"label_names": card["label_names"], "common_labels": card["common_labels"]})
    return d


def label_map(path: Path, top: int, bottom: int, corner: int | None = None) -> Path:
    ids = np.full((16, 16), top, np.uint8)
    ids[9:] = bottom
    if corner is not None:
        ids[:4, :4] = corner
    Image.fromarray(ids).save(path)
    return path


def test_a_map_of_another_label_set_warns_in_one_line(coco_model, tmp_path, capsys):
    ade = label_map(tmp_path / "ade.png", 3, 5)  # ADE20K: sky above trees; COCO-Stuff: motorcycle above bus
    assert main(["sample", "--model", str(coco_model), "--cond", str(ade), "--out", str(tmp_path / "a"),
                 "--quiet"]) == 0
    (line,) = warnings_in(capsys.readouterr().err, "ADE20K")
    assert line.startswith(f"vqforge: warning: {ade}: its ids look like ADE20K labels (3 = sky, 5 = tree")
    assert "3 = motorcycle" in line and "convert the map to COCO-Stuff ids" in line
    coco = label_map(tmp_path / "coco.png", 156, 123)  # sky-other above grass: what the model knows
    assert main(["sample", "--model", str(coco_model), "--cond", str(coco), "--out", str(tmp_path / "c"),
                 "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err
    unused = label_map(tmp_path / "unused.png", 156, 123, corner=11)  # 11: street sign, never in COCO-Stuff maps
    assert main(["sample", "--model", str(coco_model), "--cond", str(unused), "--out", str(tmp_path / "u"),
                 "--quiet"]) == 0
    (line,) = warnings_in(capsys.readouterr().err, "outside")
    assert "ids 11 (street sign) are outside the COCO-Stuff labels" in line and "6% of the pixels" in line


def test_missing_lpips_weights_say_how_to_give_their_path(vq, tmp_path, capsys, monkeypatch):
    from vqforge.nn.vgg import locate_vgg16_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    assert main(["evaluate", "recon", "--model", str(vq), "--data", str(photos(tmp_path / "p")), "--size", "16",
                 "--lpips-vgg", str(tmp_path / "nowhere.pth"), "--quiet"]) == 0
    (line,) = warnings_in(capsys.readouterr().err, "LPIPS skipped")
    assert "--lpips-vgg /path/to/vgg16-397923af.pth" in line
    with pytest.raises(vqforge.VQForgeError) as e:  # training: a dotted override on the train command
        locate_vgg16_weights(None)
    assert "loss.perceptual_vgg_path=/path/to/vgg16-397923af.pth" in str(e.value)


def test_post_training_hint_scores_the_runs_own_tokens(vq, tmp_path, capsys):
    for name in ("forest", "street"):
        photos(tmp_path / "sorted" / name, 3)
    tokens = tmp_path / "tokens"
    assert main(["encode", "--model", str(vq), "--data", str(tmp_path / "sorted"), "--labels", "folders",
                 "--size", "16", "--out", str(tokens), "--quiet"]) == 0
    run = tmp_path / "gpt"
    assert main(["train", "transformer", "--config", "transformer_tiny_class", "--data", str(tokens),
                 "--first-stage", str(vq), "--out", str(run), "--max-steps", "2", "train.batch_size=4",
                 "train.val_fraction=0.3"]) == 0
    out = capsys.readouterr()
    assert f"vqforge evaluate nll --model {run} --data {tokens}" in out.out + out.err


def test_sampling_larger_than_trained_for_warns_in_one_line(tmp_path, capsys):
    from vqforge.models.conditioning import ClassConfig

    d = tmp_path / "whole"
    vqforge.save_model(tiny_net(ClassConfig(n_classes=3)), d,
                       extra={"max_scale": 1.5, "max_scale_why": "trained on whole images"})
    assert main(["sample", "--model", str(d), "--size", "24x24", "--num", "1", "--out", str(tmp_path / "a"),
                 "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err  # 1.5x the trained 16 px: what it was trained for
    assert main(["sample", "--model", str(d), "--size", "16x32", "--num", "1", "--out", str(tmp_path / "b"),
                 "--quiet"]) == 0
    (line,) = warnings_in(capsys.readouterr().err, "trained for")
    assert line == (f"vqforge: warning: {d}: 16x32 px is larger than it was trained for (up to 24x24 px: trained "
                    f"on whole images); expect artefacts")
