"""The segmentation condition stage: `vqforge train condition` on the S-FLCKR maps (tests/fixtures/sflckr_seg,
182 labels) learns to reconstruct them, then serves as the cond stage of a segmentation-conditional model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vqforge
from vqforge.models.conditioning import SegmentationConfig, make_condition, one_hot_labels
from vqforge.models.gpt import GPTConfig
from vqforge.models.transformer import Net2NetTransformer, TransformerConfig
from vqforge.models.vqgan import AutoencoderConfig, VQGANConfig
from vqforge.quantizers import VQConfig
from vqforge.data.maps import ConditionMaps

REPO = Path(__file__).resolve().parents[1]
MAPS = REPO / "tests" / "fixtures" / "sflckr_seg"


pytestmark = pytest.mark.usefixtures("one_thread")


def _label_maps(files: list[Path]) -> ConditionMaps:
    """The S-FLCKR label maps as the segmentation mode reads them: 32 px centre crops, (32, 32) int64 ids."""
    return ConditionMaps(make_condition(SegmentationConfig(n_labels=182)), files, 32, random_crop=False)


def test_segmentation_stage_reconstructs_sflckr_maps(tmp_path):
    run = tmp_path / "seg"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "vqforge", "train", "condition", "--config",
                        str(REPO / "configs" / "seg_tiny.yaml"), "--data", str(MAPS), "--out", str(run),
                        "--quiet", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    assert metrics["step"] == 300
    assert sorted(p.name for p in (run / "images").glob("seg_*.png"))[-1] == "seg_0000300.png"

    model = vqforge.load(run)  # an ordinary VQGAN over one-hot maps
    files = sorted(MAPS.glob("*/*.png"))
    ds = _label_maps(files)
    labels = torch.stack([ds[i]["map"] for i in range(len(ds))])  # (25, 32, 32)
    with torch.no_grad():
        rec = model(one_hot_labels(labels, 182)).reconstruction
    acc = (rec.argmax(1) == labels).float().mean().item()
    counts = torch.bincount(labels.flatten(), minlength=182)
    global_majority = (counts.max() / counts.sum()).item()
    per_image_majority = sum((torch.bincount(m.flatten()).max() / m.numel()).item() for m in labels) / len(labels)
    print(f"S-FLCKR maps (25, 32x32, 182 labels): reconstruction pixel accuracy {acc:.3f}; baselines: "
          f"most frequent label {global_majority:.3f}, each map's own most frequent label {per_image_majority:.3f}")
    assert acc == pytest.approx(metrics["val/pixel_accuracy"], abs=1e-4)
    assert acc > per_image_majority + 0.05 and acc > 3 * global_majority

    # as the condition stage of a segmentation-conditional transformer
    first = VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 1, 1), num_res_blocks=0, attn_resolutions=(),
                                          resolution=32, z_channels=8), VQConfig(n_embed=64, embed_dim=8))
    cfg = TransformerConfig(gpt=GPTConfig(vocab_size=64, block_size=128, n_layer=1, n_head=2, n_embd=32),
                            first_stage=first, cond=SegmentationConfig(n_labels=182,
                                                                   cond_stage=model.config))
    t = Net2NetTransformer(cfg)
    t.cond_stage.load_state_dict(model.state_dict())
    c = t.build_condition(raw=labels[:2])
    c_idx = t.encode_to_c(c)
    assert c_idx.shape == (2, 64) and t.cond_hw((32, 32)) == (8, 8)
    assert torch.equal(c_idx, model.encode_to_indices(one_hot_labels(labels[:2], 182)).flatten(1))
    logits, target = t(torch.zeros(2, 3, 32, 32), c)
    assert logits.shape == (2, 64, 64)


def test_encode_paired_maps_then_train_segmentation_conditional(tmp_path):
    """`vqforge encode` pairs photos with their label maps (same relative path, .png), and a
    segmentation-conditional transformer trains on the resulting token dataset."""
    from vqforge.data.tokens import TokenDataset

    torch.manual_seed(0)
    first = VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 1, 1), num_res_blocks=0, attn_resolutions=(),
                                          resolution=32, z_channels=8), VQConfig(n_embed=64, embed_dim=8))
    seg = VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 1, 1), num_res_blocks=0, attn_resolutions=(),
                                        in_channels=182, out_ch=182, resolution=32, z_channels=8),
                      VQConfig(n_embed=32, embed_dim=8))
    from vqforge.models.vqgan import VQGAN

    vqforge.save_model(VQGAN(first), tmp_path / "vq")
    vqforge.save_model(VQGAN(seg), tmp_path / "seg")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}

    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "vqforge", *args], capture_output=True, text=True, env=env,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return r

    photos = REPO / "tests" / "fixtures" / "sflckr_photos"
    cli("encode", "--model", str(tmp_path / "vq"), "--cond-stage", str(tmp_path / "seg"), "--cond", "segmentation",
        "--data", str(photos), "--cond-data", str(MAPS), "--size", "32", "--out", str(tmp_path / "tok"),
        "--quiet")
    ds = TokenDataset(tmp_path / "tok")
    assert len(ds) == 4 and ds.meta["cond"]["mode"] == "segmentation" and ds.meta["cond"]["grid"] == [8, 8]
    # the condition tokens are the seg stage's codes of the paired map (resized NEAREST, center crop)
    first_file = (tmp_path / "tok" / "files.txt").read_text().splitlines()[0]
    rel = Path(first_file).relative_to(photos).with_suffix(".png")
    labels = _label_maps([MAPS / rel])[0]["map"]
    expect = vqforge.load(tmp_path / "seg").encode_to_indices(one_hot_labels(labels[None], 182)).flatten()
    assert torch.equal(ds[0]["cond"], expect)
    r = cli("train", "transformer", "--config", str(REPO / "configs" / "transformer_tiny_seg.yaml"),
            "--data", str(tmp_path / "tok"), "--first-stage", str(tmp_path / "vq"), "--cond-stage",
            str(tmp_path / "seg"), "--out", str(tmp_path / "run"), "--max-steps", "2", "--quiet", "--json",
            "train.batch_size=2", "train.val_fraction=0.25", "train.preview_every=2", "train.n_samples=1")
    assert json.loads(r.stdout.strip().splitlines()[-1])["step"] == 2
    model = vqforge.load(tmp_path / "run")
    assert model.mode == "segmentation" and model.cond_hw((32, 32)) == (8, 8)


def test_encode_random_crops_pair_image_and_map(tmp_path):
    """`vqforge encode --crops N --resize-max R` writes N random crops per photo (at several scales), and each
    crop's condition tokens are the segmentation stage's codes of the same crop of the paired map: the
    transformer sees windows away from the centre, as sliding-window sampling needs."""
    from vqforge.data.paired import PairedCrops
    from vqforge.models.conditioning import stage_condition
    from vqforge.data.tokens import TokenDataset
    from vqforge.models.vqgan import VQGAN

    torch.manual_seed(0)
    first = VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 1, 1), num_res_blocks=0, attn_resolutions=(),
                                          resolution=32, z_channels=8), VQConfig(n_embed=64, embed_dim=8))
    seg = VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 1, 1), num_res_blocks=0, attn_resolutions=(),
                                        in_channels=182, out_ch=182, resolution=32, z_channels=8),
                      VQConfig(n_embed=32, embed_dim=8))
    vqforge.save_model(VQGAN(first), tmp_path / "vq")
    vqforge.save_model(VQGAN(seg), tmp_path / "seg")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    photos = REPO / "tests" / "fixtures" / "sflckr_photos"
    r = subprocess.run([sys.executable, "-m", "vqforge", "encode", "--model", str(tmp_path / "vq"), "--cond-stage",
                        str(tmp_path / "seg"), "--cond", "segmentation", "--data", str(photos), "--cond-data",
                        str(MAPS), "--size", "32", "--crops", "3", "--resize-max", "96", "--out",
                        str(tmp_path / "tok"), "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ds = TokenDataset(tmp_path / "tok")
    files = (tmp_path / "tok" / "files.txt").read_text().splitlines()
    assert len(ds) == 12 and len(files) == 12 and files[0] == files[1] == files[2] != files[3]
    # three crops of one photo differ (random places and scales), so their image tokens differ
    assert not torch.equal(ds[0]["tokens"], ds[1]["tokens"]) and not torch.equal(ds[1]["tokens"], ds[2]["tokens"])
    # crop i of the map, cut with crop i's geometry, encodes to row i's condition tokens
    seg_stage = vqforge.load(tmp_path / "seg")
    imgs = PairedCrops([Path(f) for f in files[::3]], 32, 3, [MAPS / Path(f).relative_to(photos).with_suffix(".png")
                                                              for f in files[::3]],
                       stage_condition(seg_stage, "segmentation"), crops=3, resize_max=96, seed=0)
    maps = imgs.maps()
    for i in (1, 5):
        expect = seg_stage.encode_to_indices(one_hot_labels(maps[i][None], 182)).flatten()
        assert torch.equal(ds[i]["cond"], expect)
        assert torch.equal(ds[i]["tokens"], vqforge.load(tmp_path / "vq").encode_to_indices(imgs[i][None]).flatten())
