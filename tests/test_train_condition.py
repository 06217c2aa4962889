"""Condition stages beyond segmentation: a depth stage (D-RIN float32-in-RGBA depth PNGs) and an edge stage
(Canny edges of photos) train, reconstruct better than at the start, and serve as a transformer's cond stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vqforge
from vqforge.models.conditioning import DepthConfig, read_depth
from vqforge.models.gpt import GPTConfig
from vqforge.models.transformer import Net2NetTransformer, TransformerConfig
from vqforge.models.vqgan import AutoencoderConfig, VQGANConfig
from vqforge.quantizers import VQConfig
from vqforge.train.condition import ConditionRunConfig, ConditionSettings, train_condition

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "fixtures" / "sflckr_photos"

pytestmark = pytest.mark.usefixtures("one_thread")


def drin_depth_png(path: Path, depth: np.ndarray) -> Path:
    """Write ``depth`` (H, W) float32 in the D-RIN layout: an RGBA PNG whose 4 bytes per pixel are the float."""
    rgba = np.ascontiguousarray(depth.astype("<f4")).view(np.uint8).reshape(*depth.shape, 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def depth_maps(folder: Path, n: int = 24, size: int = 40) -> list[Path]:
    """Smooth scenes: a tilted ground plane plus a few round objects, distances in metres."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    files = []
    for i in range(n):
        d = 2.0 + 20.0 * (1 - yy) * rng.uniform(0.5, 1.5) + 3.0 * xx * rng.uniform(-1, 1)
        for _ in range(3):
            cy, cx, r = rng.uniform(0.2, 0.8, 2).tolist() + [rng.uniform(0.08, 0.2)]
            d = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r * r, rng.uniform(1.0, 4.0), d)
        files.append(drin_depth_png(folder / f"scene{i:02d}.png", d.astype(np.float32)))
    return files


def _stage(in_ch: int) -> VQGANConfig:
    return VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                                         in_channels=in_ch, out_ch=in_ch, resolution=32, z_channels=32),
                       VQConfig(n_embed=64, embed_dim=32))


def _validation(run: Path) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        if "val/loss" in m:
            out[m["step"]] = m
    return out


def test_the_d_rin_depth_layout_reads_back_exactly(tmp_path):
    d = np.random.default_rng(1).uniform(0.5, 80.0, (7, 9)).astype(np.float32)
    assert np.array_equal(read_depth(drin_depth_png(tmp_path / "d.png", d)), d)
    Image.fromarray(np.arange(63, dtype=np.uint16).reshape(7, 9) * 1000).save(tmp_path / "d16.png")  # 16-bit
    assert read_depth(tmp_path / "d16.png")[6, 8] == 62000.0


@pytest.mark.slow
def test_depth_stage_trains_and_encodes_depth_conditions(tmp_path):
    depth_maps(tmp_path / "depth")
    cfg = ConditionRunConfig(mode="depth", model=_stage(1), train=ConditionSettings(
        data=str(tmp_path / "depth"), image_size=32, batch_size=8, learning_rate=3e-3, val_fraction=0.2,
        val_every=40, preview_every=40, checkpoint_every=0, precision="fp32", seed=1))
    result = train_condition(cfg, tmp_path / "run", max_steps=40, quiet=True)
    val = _validation(tmp_path / "run")
    print(f"depth stage: val L1 {val[0]['val/l1']:.3f} -> {val[40]['val/l1']:.3f}, "
          f"PSNR {val[0]['val/psnr']:.1f} -> {val[40]['val/psnr']:.1f} dB")
    assert result.step == 40 and val[40]["val/l1"] < 0.5 * val[0]["val/l1"]
    assert (tmp_path / "run" / "images" / "depth_0000040.png").is_file()

    stage = vqforge.load(tmp_path / "run")  # an ordinary 1-channel VQGAN, usable as a depth cond stage
    first = VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=0, attn_resolutions=(),
                                          resolution=32, z_channels=8), VQConfig(n_embed=64, embed_dim=8))
    t = Net2NetTransformer(TransformerConfig(
        gpt=GPTConfig(vocab_size=64, block_size=512, n_layer=1, n_head=2, n_embd=32), first_stage=first,
        cond=DepthConfig(cond_stage=stage.config)))
    t.cond_stage.load_state_dict(stage.state_dict())
    raw = torch.from_numpy(read_depth(tmp_path / "depth" / "scene00.png")[:32, :32])[None, None]
    c = t.encode_to_c(t.build_condition(raw=raw))
    expect = stage.encode_to_indices((raw - raw.min()) / (raw.max() - raw.min()) * 2 - 1).flatten(1)
    assert torch.equal(c, expect) and c.shape == (1, 256)


@pytest.mark.slow
def test_edge_stage_trains_on_canny_edges_of_photos(tmp_path):
    cfg = ConditionRunConfig(mode="edges", model=_stage(1), train=ConditionSettings(
        data=str(PHOTOS), image_size=32, resize=64, batch_size=4, learning_rate=3e-3, val_fraction=0.0,
        val_every=60, preview_every=0, checkpoint_every=0, precision="fp32", seed=1))
    result = train_condition(cfg, tmp_path / "run", max_steps=60, quiet=True)
    val = _validation(tmp_path / "run")
    print(f"edge stage: val BCE {val[0]['val/loss']:.4f} -> {val[60]['val/loss']:.4f}, "
          f"edge F1 {val[0]['val/edge_f1']:.3f} -> {val[60]['val/edge_f1']:.3f} "
          f"(edges cover {val[60]['val/edge_fraction']:.3f} of the pixels)")
    assert result.step == 60 and 0.02 < val[0]["val/edge_fraction"] < 0.5
    # the output bias starts at the edges' log-odds (the prior); training must beat it
    assert val[60]["val/loss"] < 0.85 * val[0]["val/loss"] and val[60]["val/edge_f1"] > val[0]["val/edge_f1"] + 0.1
    assert vqforge.load(tmp_path / "run").config.ddconfig.in_channels == 1
