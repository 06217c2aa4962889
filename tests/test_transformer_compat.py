"""Loading the original's Net2NetTransformer (project YAML + checkpoint) through ``load_taming``.

The test writes the pair in the original's layout (``model.target`` / ``params`` YAML, a checkpoint
whose ``state_dict`` has ``first_stage_model.*``, ``cond_stage_model.*`` and ``transformer.*`` keys
including the GPT's ``attn.mask`` buffers) from the reference vectors of the original implementation.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

import vqforge
from vqforge.io import VQForgeError
from vqforge.models.transformer import Net2NetTransformer

FIX = Path(__file__).parent / "fixtures"


def _fixture(name):
    return torch.load(FIX / f"{name}.pt", weights_only=True)


def _vq_params(cfg, n_labels=None):
    params = {"embed_dim": cfg["embed_dim"], "n_embed": cfg["n_embed"], "ddconfig": dict(cfg["ddconfig"]),
              "lossconfig": {"target": "taming.modules.losses.DummyLoss"}}
    if n_labels:
        params["n_labels"] = n_labels
    return params


def _write_pair(tmp_path: Path, cond_stage_config, cond_sd=None, extra_params=None):
    gpt, vq = _fixture("gpt_small"), _fixture("vqgan_f4_legacy")
    params = {
        "cond_stage_key": "segmentation",
        "transformer_config": {"target": "taming.modules.transformer.mingpt.GPT", "params": dict(gpt["config"])},
        "first_stage_config": {"target": "taming.models.vqgan.VQModel", "params": _vq_params(vq["config"])},
        "cond_stage_config": cond_stage_config,
        **(extra_params or {}),
    }
    cfg = {"model": {"base_learning_rate": 4.5e-6, "target": "taming.models.cond_transformer.Net2NetTransformer",
                     "params": params}}
    sd = dict(gpt["state_dict"])  # transformer.* incl. attn.mask buffers
    sd.update({f"first_stage_model.{k}": v for k, v in vq["state_dict"].items()})
    sd.update({f"cond_stage_model.{k}": v for k, v in (cond_sd or {}).items()})
    (tmp_path / "project.yaml").write_text(yaml.safe_dump(cfg))
    torch.save({"state_dict": sd, "global_step": 7}, tmp_path / "last.ckpt")
    return tmp_path / "project.yaml", tmp_path / "last.ckpt"


def test_gpt_logits_parity_through_load_taming(tmp_path):
    gpt, vq = _fixture("gpt_small"), _fixture("vqgan_f4_legacy")
    y, c = _write_pair(tmp_path, "__is_unconditional__", extra_params={"sos_token": 64})
    model = vqforge.load_taming(y, c)
    assert isinstance(model, Net2NetTransformer)
    assert model.mode == "unconditional" and model.config.cond.sos_token == 64
    with torch.no_grad():
        logits = model.transformer(gpt["inputs"]["idx"])
    assert logits.shape == gpt["outputs"]["logits"].shape
    torch.testing.assert_close(logits, gpt["outputs"]["logits"], atol=1e-4, rtol=0)
    # the first stage came along: same indices as the original
    z = model.encode_to_z(vq["inputs"]["x"])
    assert torch.equal(z, vq["outputs"]["indices"].reshape(2, -1))
    assert model.encode_to_c(vq["inputs"]["x"]).tolist() == [[64], [64]]


def test_segmentation_cond_stage_and_roundtrip(tmp_path):
    seg = _fixture("vqgan_f8_seg")
    sd = dict(seg["state_dict"])
    sd["colorize"] = torch.randn(3, 8, 1, 1)  # VQSegmentationModel's buffer, dropped on load
    cond = {"target": "taming.models.vqgan.VQSegmentationModel", "params": _vq_params(seg["config"], n_labels=8)}
    y, c = _write_pair(tmp_path, cond, cond_sd=sd)
    model = vqforge.load_taming(y, c)
    assert model.mode == "segmentation" and model.config.cond.n_labels == 8
    x = seg["inputs"]["x"]
    c_idx = model.encode_to_c(x)
    assert torch.equal(c_idx, seg["outputs"]["indices"].reshape(2, -1))
    assert model.cond_hw((64, 64)) == (8, 8)
    # a converted model dir is self-contained and reproduces the same tokens and logits
    out = vqforge.save_model(model, tmp_path / "converted")
    again = vqforge.load(out)
    assert torch.equal(again.encode_to_c(x), c_idx)
    idx = torch.randint(0, 64, (2, 20))
    torch.testing.assert_close(again.transformer(idx), model.transformer(idx), atol=0, rtol=0)


@pytest.mark.parametrize("cond, mode", [
    ({"target": "taming.modules.util.Labelator", "params": {"n_classes": 10}}, "class"),
    ({"target": "taming.modules.util.SOSProvider", "params": {"sos_token": 3}}, "unconditional"),
    ({"target": "taming.modules.misc.coord.CoordStage", "params": {"n_embed": 64, "down_factor": 4}}, "coord"),
])
def test_other_condition_stages(tmp_path, cond, mode):
    y, c = _write_pair(tmp_path, cond)
    model = vqforge.load_taming(y, c)
    assert model.mode == mode
    if mode == "class":
        assert model.null_token is None  # the original's class models have no NULL class
        assert model.encode_to_c(torch.tensor([4, 9])).tolist() == [[4], [9]]
    if mode == "coord":
        cmap = model.build_condition(torch.zeros(2, 3, 32, 32))
        ids = model.encode_to_c(cmap)
        assert ids.shape == (2, 64) and ids.min() >= 0 and ids.max() < 64
        assert torch.all(ids[:, 1:] >= ids[:, :-1])  # raster coordinates grow monotonically


def test_clear_errors(tmp_path):
    y, c = _write_pair(tmp_path, {"target": "my.custom.Stage"})
    with pytest.raises(VQForgeError, match="unsupported cond_stage_config target"):
        vqforge.load_taming(y, c)
    y, c = _write_pair(tmp_path, "__is_unconditional__", extra_params={"sos_token": 64})
    sd = torch.load(c, weights_only=True)
    bad = copy.deepcopy(sd)
    del bad["state_dict"]["transformer.head.weight"]
    torch.save(bad, c)
    with pytest.raises(VQForgeError, match="missing keys: transformer.head.weight"):
        vqforge.load_taming(y, c)


def test_convert_cli_writes_a_model_dir(tmp_path):
    import os
    import subprocess
    import sys

    gpt = _fixture("gpt_small")
    y, c = _write_pair(tmp_path, {"target": "taming.modules.util.Labelator", "params": {"n_classes": 10}})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    r = subprocess.run([sys.executable, "-m", "vqforge", "convert", "--config", str(y), "--checkpoint", str(c),
                        "--out", str(tmp_path / "model")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    model = vqforge.load(tmp_path / "model")
    assert isinstance(model, Net2NetTransformer) and model.mode == "class"
    with torch.no_grad():
        torch.testing.assert_close(model.transformer(gpt["inputs"]["idx"]), gpt["outputs"]["logits"], atol=1e-4, rtol=0)


def test_gumbel_first_stage_and_downsampled_depth_condition(tmp_path):
    """A GumbelVQ first stage (the original's f8 8192-code models) and a depth VQModel cond stage with
    ``downsample_cond_size`` load; the image tokens match the original's indices."""
    gum, vq = _fixture("gumbel_f4"), _fixture("vqgan_f4_legacy")
    gpt = _fixture("gpt_small")
    depth_cfg = dict(vq["config"])
    depth_cfg["ddconfig"] = {**vq["config"]["ddconfig"], "in_channels": 1, "out_ch": 1}
    from vqforge.models.vqgan import VQGAN
    from vqforge.compat.taming import vqgan_config_from_params

    depth = VQGAN(vqgan_config_from_params("taming.models.vqgan.VQModel", _vq_params(depth_cfg), "x"))
    cond = {"target": "taming.models.vqgan.VQModel", "params": _vq_params(depth_cfg)}
    y, c = _write_pair(tmp_path, cond, cond_sd=depth.state_dict(),
                       extra_params={"cond_stage_key": "depth", "downsample_cond_size": 16})
    cfg = yaml.safe_load(y.read_text())
    cfg["model"]["params"]["first_stage_config"] = {
        "target": "taming.models.vqgan.GumbelVQ",
        "params": {**_vq_params(gum["config"]), "kl_weight": 1e-8,
                   "temperature_scheduler_config": {"target": "taming.lr_scheduler.LambdaWarmUpCosineScheduler"}}}
    y.write_text(yaml.safe_dump(cfg))
    sd = torch.load(c, weights_only=True)
    sd["state_dict"] = {k: v for k, v in sd["state_dict"].items() if not k.startswith("first_stage_model.")}
    sd["state_dict"].update({f"first_stage_model.{k}": v for k, v in gum["state_dict"].items()})
    torch.save(sd, c)
    model = vqforge.load_taming(y, c)
    assert model.mode == "depth" and model.config.first_stage.quantizer.kind == "gumbel"
    assert torch.equal(model.encode_to_z(gum["inputs"]["x"]), gum["outputs"]["indices"].reshape(2, -1))
    assert model.cond_hw((32, 32)) == (4, 4)  # resized to 16 px, then f4
    assert model.encode_to_c(torch.rand(2, 1, 32, 32) * 2 - 1).shape == (2, 16)
    torch.testing.assert_close(model.transformer(gpt["inputs"]["idx"]), gpt["outputs"]["logits"], atol=1e-4, rtol=0)
