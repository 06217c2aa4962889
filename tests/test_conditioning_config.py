"""Conditioning modes' configs: one family of config classes chosen by ``mode:``, read like the quantizer kinds.

Model and run directories written before each mode had its own config (tests/fixtures/legacy_configs, written by
commit bbf4895's own code; the expected configs below are stated by hand from the settings it was given) load as
the same modes, with one notice per renamed or ignored setting, each time they are read; a setting of another mode
is an error naming the mode that has it; docs/architecture.md's "adding a mode" example works as written.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import vqforge
from vqforge.api import build_model
from vqforge.cli import main
from vqforge.config import ConfigError, apply_overrides, dump_yaml, from_dict, load_yaml
from vqforge.models.conditioning import (MODES, ClassConfig, ConditionConfig, DepthConfig, SegmentationConfig,
                                         UnconditionalConfig, add_mode)
from vqforge.models.transformer import Net2NetTransformer, TransformerConfig
from vqforge.models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
from vqforge.quantizers import VQConfig
from vqforge.sampling.pipeline import condition_tokens, layout
from vqforge.train.transformer import TransformerRunConfig

REPO = Path(__file__).resolve().parents[1]
LEGACY = REPO / "tests" / "fixtures" / "legacy_configs"

pytestmark = pytest.mark.usefixtures("one_thread")


def vq(in_ch: int, n_embed: int = 32) -> VQGANConfig:
    """The tiny f4 VQGAN of the fixtures (16 px, 32 codes of 8 dims)."""
    dd = AutoencoderConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(), in_channels=in_ch,
                           out_ch=in_ch, resolution=16, z_channels=8)
    return VQGANConfig(ddconfig=dd, quantizer=VQConfig(n_embed=n_embed, embed_dim=8))


EXPECTED = {
    "class": ClassConfig(n_classes=10, null_class=True, dropout=0.1),
    "segmentation": SegmentationConfig(n_labels=5, cond_stage=vq(5), downsample_cond_size=8),
    "unconditional": UnconditionalConfig(sos_token=3),
}


# ------------------------------------------------------------------------------------------ old records
@pytest.mark.parametrize("mode", list(EXPECTED))
def test_old_model_directory_loads_as_the_same_mode(mode, tmp_path, capsys):
    meta = yaml.safe_load((LEGACY / f"model_transformer_{mode}.yaml").read_text())
    assert "canny_sigma" in meta["config"]["cond"]  # the flat record: every mode's settings
    model = build_model("transformer", meta["config"])
    assert model.config.cond == EXPECTED[mode] and model.config.first_stage == vq(3)
    shapes = json.loads((LEGACY / "transformer_state_shapes.json").read_text())[mode]
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == shapes
    capsys.readouterr()

    d = tmp_path / "model"  # the same model.yaml as a model directory on disk (weights written next to it)
    d.mkdir()
    shutil.copy(LEGACY / f"model_transformer_{mode}.yaml", d / "model.yaml")
    vqforge.save_model(model, tmp_path / "again")
    shutil.copy(tmp_path / "again" / "model.safetensors", d / "model.safetensors")
    renamed = f"vqforge: {d / 'model.yaml'}: config.cond.class_dropout is now config.cond.dropout (renamed)"
    for _ in range(2):  # told on every reading, not once per process
        assert vqforge.load(d).config == model.config
        err = capsys.readouterr().err.splitlines()
        assert err == ([renamed] if mode == "class" else [])


def test_old_run_config_drops_the_settings_its_mode_ignored(capsys):
    path = LEGACY / "run_config_transformer_class_lowres.yaml"
    from vqforge.train.settings import read_run_config
    from vqforge.train.transformer import OLD

    for _ in range(2):  # a run config is read as the trainer reads it (older train.* names included)
        cfg = read_run_config(TransformerRunConfig, path, OLD)
        assert cfg.model.cond == EXPECTED["class"]
        err = capsys.readouterr().err.splitlines()
        assert [line for line in err if "model.cond" in line] == [
            f"vqforge: {path}: model.cond.lowres_factor: 2 is ignored: mode 'class' has no such setting "
            "(a config written before each conditioning mode had its own settings)",
            f"vqforge: {path}: model.cond.class_dropout is now model.cond.dropout (renamed)"]


def test_a_file_naming_a_setting_of_another_mode_that_no_flat_record_had_is_an_error():
    with pytest.raises(ConfigError, match=r"^model\.cond\.null_condition: unknown key for mode 'class' \(a setting "
                                          r"of mode segmentation, depth, edges, lowres, coord, tokens\)$"):
        from_dict(ConditionConfig, {"mode": "class", "n_classes": 3, "null_condition": True}, "model.cond")


# ------------------------------------------------------------------------------------------ overrides
def test_an_override_naming_a_setting_of_another_mode_names_the_mode_that_has_it():
    cfg = TransformerRunConfig()
    assert type(cfg.model.cond) is UnconditionalConfig
    with pytest.raises(ConfigError, match=r"^model\.cond\.n_classes: unknown key for mode 'unconditional' "
                                          r"\(a setting of mode class\)$"):
        apply_overrides(cfg, ["model.cond.n_classes=10"])
    # an old flat name is renamed for the mode that has it and an error for the others
    assert apply_overrides(cfg, ["model.cond.mode=class", "model.cond.class_dropout=0.2"]).model.cond.dropout == 0.2
    with pytest.raises(ConfigError, match=r"model\.cond\.class_dropout: unknown key"):
        apply_overrides(cfg, ["model.cond.class_dropout=0.2"])


def test_cli_refuses_a_setting_of_another_mode_in_one_line(tmp_path, capsys):
    code = main(["train", "transformer", "--config", str(REPO / "configs" / "transformer_tiny_uncond.yaml"),
                 "model.cond.n_labels=5", "--data", str(tmp_path), "--first-stage", str(tmp_path),
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == ("vqforge: error: model.cond.n_labels: unknown key for mode 'unconditional' "
                                         "(a setting of mode segmentation)")
    assert not (tmp_path / "run").exists()


def test_switching_mode_by_override_keeps_the_shared_settings_in_any_order():
    seg = TransformerConfig(cond=SegmentationConfig(n_labels=5, cond_stage=vq(5), downsample_cond_size=8,
                                                    null_condition=True, dropout=0.1))
    for order in (["cond.mode=depth", "cond.dropout=0.2"], ["cond.dropout=0.2", "cond.mode=depth"]):
        assert apply_overrides(seg, order).cond == DepthConfig(cond_stage=vq(5), downsample_cond_size=8,
                                                               null_condition=True, dropout=0.2)
    plain = TransformerConfig()
    for order in (["cond.n_classes=3", "cond.mode=class"], ["cond.mode=class", "cond.n_classes=3"]):
        assert apply_overrides(plain, order).cond == ClassConfig(n_classes=3)
    assert apply_overrides(TransformerConfig(cond=ClassConfig(n_classes=3)), ["cond.mode=unconditional"]).cond == \
        UnconditionalConfig()


def test_the_base_config_is_not_a_mode():
    with pytest.raises(TypeError, match="build one mode's config"):
        ConditionConfig()
    assert yaml.safe_load(dump_yaml(ClassConfig(n_classes=3))) == {"mode": "class", "n_classes": 3, "null_class": True,
                                                                   "dropout": 0.0, "names": []}


# ------------------------------------------------------------------------------------ adding a mode
def docs_gray_module() -> str:
    """The ``gray.py`` of docs/architecture.md's "Adding a mode" section, as written there."""
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text[text.index("### Adding a mode"):]
    found = re.search(r"conditioning/gray\.py`:\n\n```python\n(.*?)```", section, re.S)
    assert found, "docs/architecture.md: the gray.py example is gone"
    return found.group(1)


@pytest.fixture
def gray(tmp_path):
    """docs/architecture.md's gray mode, written as its file and registered as its one registry line does."""
    name = "vqforge.models.conditioning.gray"
    (tmp_path / "gray.py").write_text(docs_gray_module())
    spec = importlib.util.spec_from_file_location(name, tmp_path / "gray.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    add_mode(module.Gray)
    try:
        yield module
    finally:
        del MODES["gray"], ConditionConfig.variants.classes["gray"], sys.modules[name]


def test_the_documented_gray_mode_works_as_the_docs_say(gray, tmp_path, capsys):
    stage = VQGAN(vq(1))  # a one-channel condition stage
    cfg = from_dict(TransformerConfig, {"cond": {"mode": "gray", "null_condition": True, "dropout": 0.1},
                                        "gpt": {"vocab_size": 0, "block_size": 0, "n_layer": 1, "n_head": 2,
                                                "n_embd": 32}},
                    "model")
    assert type(cfg.cond) is gray.GrayConfig and gray.Gray.name == "gray"
    cfg = TransformerConfig(gpt=cfg.gpt, first_stage=vq(3), cond=gray.Gray(cfg.cond).with_stage(stage.config))
    torch.manual_seed(0)
    m = Net2NetTransformer(cfg).eval()
    m.cond_stage.load_state_dict(stage.state_dict())
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    luma = 0.299 * images[:, 0:1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3]
    assert torch.equal(m.encode_to_c(m.build_condition(images=images)), stage.encode_to_indices(luma).flatten(1))
    assert m.config.gpt.vocab_size == 33 and m.null_token == 32  # 32 codes + the null condition (guidance)
    lay = layout(m, (16, 24), cfg_scale=2.0)  # guided sliding windows
    c, un = condition_tokens(m, lay, 1, m.build_condition(images=torch.zeros(1, 3, 16, 24)), cfg_scale=2.0)
    assert c.shape == un.shape == (1, 4, 6) and (un == 32).all()

    # saved, loaded and sampled from a photo by the command line (the spatial base reads an RGB file)
    vqforge.save_model(m, tmp_path / "model")
    assert yaml.safe_load((tmp_path / "model" / "model.yaml").read_text())["config"]["cond"]["mode"] == "gray"
    Image.fromarray((np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)).save(tmp_path / "p.png")
    assert main(["sample", "--model", str(tmp_path / "model"), "--cond", str(tmp_path / "p.png"), "--cfg", "2",
                 "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    assert Image.open(tmp_path / "out" / "00000.png").size == (16, 16)
