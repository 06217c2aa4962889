"""A conditioning mode is one file and one registry line: a toy mode written here, and nowhere in vqforge, gets its
condition stage trained, a transformer trained on it, samples drawn from the command line and jobs served by the
web app, without another module knowing its name (docs/architecture.md, "Adding a mode")."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from PIL import Image

import vqforge
from vqforge.cli import main
from vqforge.models.conditioning import MODES, ConditionConfig, StageTraining, add_mode, stage_modes
from vqforge.models.conditioning.spatial import StageCondition, StageConfig
from vqforge.models.gpt import GPTConfig
from vqforge.models.transformer import TransformerConfig
from vqforge.models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
from vqforge.quantizers import VQConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "vqforge"
PHOTOS = Path(__file__).resolve().parent / "fixtures" / "sflckr_photos"  # 3 scene folders, 4 photos

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------- the mode's one file
@dataclass(frozen=True)
class ToyLumaConfig(StageConfig):
    """The toy mode has only the condition-stage settings."""

    mode: ClassVar[str] = "toy_luma"


class ToyLuma(StageCondition):
    """Model input: the image's brightness (B, 1, H, W) in [-1, 1], computed from the images; with nothing given,
    flat mid-gray (so it can be sampled with no input). Its condition stage learns brightness under an L1 loss."""

    Config = ToyLumaConfig
    input_hint = "photos whose brightness the samples follow (--cond)"
    stage_channels = 1
    stage_training = StageTraining(preview_name="luma")

    @classmethod
    def takes_stage(cls, in_channels: int) -> bool:
        return False  # asked for by name only

    def build_input(self, images=None, raw=None) -> torch.Tensor:
        if images is None:
            raise ValueError("toy_luma conditioning is computed from the images")
        return images.mean(1, keepdim=True)  # (B, 1, H, W)

    def default_input(self, batch, image_hw, device=None):
        return torch.zeros(batch, 1, *self.input_hw(image_hw), device=device)

    def stage_metrics(self, rec, x):
        return {"val/luma_l1": (rec.clamp(-1, 1) - x).abs().mean().item()}


@pytest.fixture
def toy_mode():
    """The registry line (``add_mode``), undone afterwards so that other tests see the shipped modes only."""
    add_mode(ToyLuma)
    try:
        yield ToyLuma
    finally:
        del MODES[ToyLuma.name], ConditionConfig.variants.classes[ToyLuma.name]


def _vq(in_ch: int, n_embed: int) -> VQGANConfig:
    return VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 1, 1), num_res_blocks=0, attn_resolutions=(),
                                         in_channels=in_ch, out_ch=in_ch, resolution=32, z_channels=8),
                       VQConfig(n_embed=n_embed, embed_dim=8))


def test_a_mode_written_in_one_file_trains_samples_and_serves(toy_mode, tmp_path, capsys):
    from vqforge.train.condition import ConditionRunConfig, ConditionSettings, train_condition
    from vqforge.train.transformer import TransformerRunConfig, TransformerSettings, train_transformer

    assert "toy_luma" in stage_modes()
    assert not [p for p in SRC.rglob("*.py") if "toy_luma" in p.read_text()], "vqforge itself names the toy mode"

    # 1. its condition stage, trained by `train condition` from what the mode declares
    stage_run = tmp_path / "stage"
    cfg = ConditionRunConfig(mode="toy_luma", model=_vq(1, 32), train=ConditionSettings(
        data=str(PHOTOS), image_size=32, batch_size=3, val_fraction=0.25, val_every=2, preview_every=2,
        checkpoint_every=0, precision="fp32"))
    result = train_condition(cfg, stage_run, max_steps=2, quiet=True)
    assert result.step == 2 and "val/luma_l1" in result.last_val
    assert (stage_run / "images" / "luma_0000002.png").is_file()

    # 2. a transformer over a first stage and that condition stage, trained on the photos
    torch.manual_seed(0)
    vqforge.save_model(VQGAN(_vq(3, 64)), tmp_path / "vq")
    run_cfg = TransformerRunConfig(
        model=TransformerConfig(gpt=GPTConfig(vocab_size=0, block_size=0, n_layer=1, n_head=2, n_embd=32),
                                cond=ToyLumaConfig()),
        train=TransformerSettings(batch_size=3, image_size=32, crop="center", val_fraction=0.25,
                                     preview_every=2, n_samples=1, checkpoint_every=0))
    train_transformer(run_cfg, str(PHOTOS), tmp_path / "gpt", first_stage=str(tmp_path / "vq"), cond_stage=str(stage_run),
          max_steps=2, quiet=True)
    model = vqforge.load(tmp_path / "gpt")
    assert type(model.condition) is ToyLuma and model.config.gpt.block_size == 127  # 64 condition + 64 image tokens, less the last

    # 3. sampled by the command line, with no input (the mode's default) and from a photo
    photo = next(PHOTOS.rglob("*.jpg"))
    for extra in ([], ["--cond", str(photo)]):
        out = tmp_path / f"samples{len(extra)}"
        assert main(["sample", "--model", str(tmp_path / "gpt"), "--num", "1", "--out", str(out), *extra]) == 0, \
            capsys.readouterr().err
        assert Image.open(out / "00000.png").size == (32, 32)

    # 4. served by the web app: the mode offers sampling with nothing given
    pytest.importorskip("fastapi", reason="vqforge serve needs fastapi (pip install 'vqforge[serve]')")
    from fastapi.testclient import TestClient

    from vqforge.serve.app import create_app
    from vqforge.serve.engine import Engine

    engine = Engine("toy", model, torch.device("cpu"))
    assert "sample" in engine.tasks
    with TestClient(create_app({"toy": engine}), base_url="http://localhost") as client:
        client.headers["X-VQForge-Token"] = client.get("/api/models").json()["token"]  # as the page sends it
        r = client.post("/api/jobs/sample", data={"model": "toy", "count": "1", "seed": "3"})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 60
        while (snap := client.get(f"/api/jobs/{r.json()['id']}").json())["state"] not in ("done", "error"):
            assert time.monotonic() < deadline, snap
            time.sleep(0.05)
        assert snap["state"] == "done", snap
        assert client.get(snap["results"][0]["url"]).headers["content-type"] == "image/png"
