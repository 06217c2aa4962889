"""Configs written before each quantizer kind had its own config still load, as the same quantizers.

The fixtures (tests/fixtures/legacy_configs, see its README) were written by commit 6c712e4's own code; the
expected configs below are stated by hand from the settings that commit was given.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import vqforge
from vqforge.api import build_model
from vqforge.config import ConfigError, apply_overrides, from_dict, load_yaml
from vqforge.io import VQForgeError, save_safetensors
from vqforge.models.vqgan import VQGANConfig
from vqforge.quantizers import EMAVQConfig, FSQConfig, GumbelConfig, L2VQConfig, QuantizerConfig, VQConfig
from vqforge.train.vqgan import VQGANRunConfig

LEGACY = Path(__file__).parent / "fixtures" / "legacy_configs"
CONFIGS = Path(__file__).parents[1] / "configs"

EXPECTED = {
    "vq": VQConfig(n_embed=16, embed_dim=4, legacy=True, kmeans_init=True, restart_after=3),
    "ema": EMAVQConfig(n_embed=16, embed_dim=4, decay=0.9, eps=1e-4, entropy_weight=0.1),
    "l2": L2VQConfig(n_embed=16, embed_dim=4, codebook_dim=2),
    "gumbel": GumbelConfig(n_embed=16, embed_dim=4, kl_weight=1e-3, temp_init=0.9),
    "fsq": FSQConfig(n_embed=12, embed_dim=4, levels=(4, 3), data_init=True),
}
RENAMED = {"ema": {"ema_decay": "decay", "ema_eps": "eps"}, "fsq": {"fsq_levels": "levels", "fsq_data_init": "data_init"}}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_old_model_directory_loads_as_the_same_quantizer(kind, tmp_path, capsys):
    meta = yaml.safe_load((LEGACY / f"model_{kind}.yaml").read_text())
    assert "fsq_levels" in meta["config"]["quantizer"]  # the flat record: every kind's settings
    model = build_model("vqgan", meta["config"])
    assert model.config.quantizer == EXPECTED[kind]
    shapes = json.loads((LEGACY / "quantize_state_shapes.json").read_text())[kind]
    assert {k: list(v.shape) for k, v in model.quantize.state_dict().items()} == shapes
    capsys.readouterr()

    # the same model.yaml as a model directory on disk (weights written next to it)
    d = tmp_path / "model"
    d.mkdir()
    shutil.copy(LEGACY / f"model_{kind}.yaml", d / "model.yaml")
    save_safetensors(d / "model.safetensors", model.state_dict())
    loaded = vqforge.load(d)
    assert loaded.config == model.config
    err = capsys.readouterr().err
    for old, new in RENAMED.get(kind, {}).items():
        assert f"model.yaml: config.quantizer.{old} is now config.quantizer.{new} (renamed)" in err
    assert err.count("vqforge:") == len(RENAMED.get(kind, {}))  # a notice only where a key was renamed


def test_old_run_config_drops_the_settings_its_kind_ignored(capsys):
    from vqforge.train.settings import read_run_config
    from vqforge.train.vqgan import OLD

    cfg = read_run_config(VQGANRunConfig, LEGACY / "run_config_vq_from_l2.yaml", OLD)  # as the trainer reads it
    assert cfg.model.quantizer == VQConfig(n_embed=256, embed_dim=32)
    err = [line for line in capsys.readouterr().err.splitlines() if "model.quantizer" in line]
    # codebook_dim: 8 was carried over from the l2 config and ignored by vq: said once, not an error
    assert len(err) == 1 and "model.quantizer.codebook_dim: 8 is ignored: kind 'vq' has no such setting" in err[0]


def test_old_checkpoint_config_loads(tmp_path):
    meta = yaml.safe_load((LEGACY / "model_ema.yaml").read_text())
    model = build_model("vqgan", meta["config"])
    ckpt = {"format_version": 1, "kind": "vqgan", "model_config": meta["config"], "model": model.state_dict()}
    torch.save(ckpt, tmp_path / "last.pt")
    assert vqforge.load(tmp_path / "last.pt").config.quantizer == EXPECTED["ema"]


def test_options_the_old_code_refused_stay_errors():
    """k-means init / restart on a kind without a codebook lookup was an error before, and still is."""
    flat = yaml.safe_load((LEGACY / "model_gumbel.yaml").read_text())["config"]
    flat["quantizer"]["restart_after"] = 5
    with pytest.raises(VQForgeError, match=r"config\.quantizer\.restart_after: unknown key for kind 'gumbel' "
                                           r"\(a setting of kind vq, ema, l2\)"):
        build_model("vqgan", flat, "m.yaml", "config")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")) + sorted(CONFIGS.glob("bundled/*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_config_loads_without_notices(path, capsys):
    from vqforge.train.condition import ConditionRunConfig
    from vqforge.train.transformer import TransformerRunConfig

    data = yaml.safe_load(path.read_text())
    cls = (TransformerRunConfig if "gpt" in data.get("model", {}) else
           ConditionRunConfig if "n_labels" in data else VQGANRunConfig)
    cfg = load_yaml(cls, path)
    assert capsys.readouterr().err == ""
    written = data["model"].get("quantizer")
    if written is not None:  # the kind named in the file, with the settings it gives
        q = cfg.model.quantizer
        assert q.kind == written.get("kind", "vq")
        assert all(getattr(q, k) == (tuple(v) if isinstance(v, list) else v) for k, v in written.items() if k != "kind")


def test_original_style_quantizer_section_defaults_to_vq():
    cfg = from_dict(VQGANConfig, {"quantizer": {"n_embed": 64, "embed_dim": 16, "beta": 0.25, "legacy": True}})
    assert cfg.quantizer == VQConfig(n_embed=64, embed_dim=16, legacy=True)


def test_switching_kind_by_override_keeps_the_shared_settings_in_any_order():
    base = VQGANConfig(quantizer=VQConfig(n_embed=64, embed_dim=16, legacy=True, restart_after=5))
    for order in (["quantizer.decay=0.5", "quantizer.kind=ema"], ["quantizer.kind=ema", "quantizer.decay=0.5"]):
        q = apply_overrides(base, order).quantizer
        assert q == EMAVQConfig(n_embed=64, embed_dim=16, restart_after=5, decay=0.5)
    with pytest.raises(ConfigError, match=r"quantizer\.decay: unknown key for kind 'vq' \(a setting of kind ema\)"):
        apply_overrides(base, ["quantizer.decay=0.5"])
    # an old flat name on the command line: renamed for the kind that has it, an error for the others
    assert apply_overrides(base, ["quantizer.kind=ema", "quantizer.ema_decay=0.5"]).quantizer.decay == 0.5
    with pytest.raises(ConfigError, match=r"quantizer\.ema_decay: unknown key"):
        apply_overrides(base, ["quantizer.ema_decay=0.5"])


def test_the_base_config_is_not_a_kind():
    with pytest.raises(TypeError, match="build one kind's config"):
        QuantizerConfig(n_embed=64, embed_dim=8)


# ---------------------------------------------------------------------------------------------- original configs
def _original(tmp_path: Path, model: dict) -> Path:
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump({"model": model}))
    return path


def test_original_config_naming_an_unknown_class_is_one_line_before_the_checkpoint_is_read(tmp_path):
    missing_ckpt = tmp_path / "never-read.ckpt"
    path = _original(tmp_path, {"target": "taming.models.vqgan.EMAVQ", "params": {}})
    with pytest.raises(VQForgeError) as info:
        vqforge.load_taming(path, missing_ckpt)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: model.target 'taming.models.vqgan.EMAVQ' is not supported")
    assert "taming.models.vqgan.VQModel" in text and "taming.models.cond_transformer.Net2NetTransformer" in text
    dd = {"ch": 32, "ch_mult": [1, 1], "num_res_blocks": 1, "attn_resolutions": [], "resolution": 16, "z_channels": 4,
          "in_channels": 3, "out_ch": 3, "double_z": False, "dropout": 0.0}
    net2net = {"target": "taming.models.cond_transformer.Net2NetTransformer", "params": {
        "transformer_config": {"params": {"vocab_size": 16, "block_size": 16}},
        "first_stage_config": {"target": "my.own.Autoencoder", "params": {}},
        "cond_stage_config": "__is_unconditional__"}}
    with pytest.raises(VQForgeError, match=r"project\.yaml: unsupported first_stage_config target 'my\.own\.Autoencoder' "
                                           r"\(supported: taming\.models\.vqgan\.GumbelVQ, "):
        vqforge.load_taming(_original(tmp_path, net2net), missing_ckpt)
    net2net["params"]["first_stage_config"] = {"target": "taming.models.vqgan.VQModel",
                                               "params": {"ddconfig": dd, "n_embed": 16, "embed_dim": 4}}
    net2net["params"]["cond_stage_config"] = {"target": "my.own.Stage"}
    with pytest.raises(VQForgeError, match=r"unsupported cond_stage_config target 'my\.own\.Stage' \(supported: .*"
                                           r"taming\.modules\.util\.Labelator"):
        vqforge.load_taming(_original(tmp_path, net2net), missing_ckpt)


def test_original_config_with_wrong_value_types_names_every_key(tmp_path):
    dd = {"ch": "wide", "ch_mult": [1, 1], "num_res_blocks": 1, "attn_resolutions": [], "resolution": 16,
          "z_channels": 4, "in_channels": 3, "out_ch": 3, "double_z": False, "dropout": 0.0}
    path = _original(tmp_path, {"target": "taming.models.vqgan.VQModel",
                                "params": {"ddconfig": dd, "n_embed": "many", "embed_dim": 4}})
    with pytest.raises(VQForgeError) as info:
        vqforge.load_taming(path, tmp_path / "never-read.ckpt")
    assert str(info.value).splitlines() == [f"{path}: 2 problems:",
                                            "  model.params.ddconfig.ch: expected an integer, got 'wide'",
                                            "  model.params.n_embed: expected an integer, got 'many'"]
