"""Typed configs: YAML round trips and checked dotted overrides."""

import pytest

from vqforge.config import ConfigError, apply_overrides, dump_yaml, from_dict, load_yaml, to_dict
from vqforge.models.gpt import GPTConfig
from vqforge.models.vqgan import VQGANConfig


def test_yaml_round_trip(tmp_path):
    cfg = VQGANConfig()
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_yaml(VQGANConfig, path) == cfg
    assert isinstance(load_yaml(VQGANConfig, path).ddconfig.ch_mult, tuple)


def test_dotted_overrides_are_type_checked():
    cfg = apply_overrides(VQGANConfig(), ["ddconfig.ch=64", "quantizer.n_embed=512", "ddconfig.ch_mult=[1,2]",
                                          "quantizer.beta=1", "quantizer.kl_weight=2e-3"])
    assert cfg.quantizer.kl_weight == 2e-3
    assert cfg.ddconfig.ch == 64 and cfg.quantizer.n_embed == 512 and cfg.ddconfig.ch_mult == (1, 2)
    assert isinstance(cfg.quantizer.beta, float)
    with pytest.raises(ConfigError, match="expected an integer"):
        apply_overrides(cfg, ["ddconfig.ch=wide"])
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(cfg, ["ddconfig.chh=3"])
    with pytest.raises(ConfigError, match="not one of"):
        apply_overrides(cfg, ["quantizer.kind=magic"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(cfg, ["ddconfig.ch"])


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match="n_layers"):
        from_dict(GPTConfig, {"n_layers": 3})
    assert from_dict(GPTConfig, to_dict(GPTConfig(n_layer=3))).n_layer == 3


def test_configs_are_frozen():
    cfg = GPTConfig()
    with pytest.raises(Exception):
        cfg.n_layer = 5  # type: ignore[misc]


def test_bad_yaml_file_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("ddconfig: {ch: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_yaml(VQGANConfig, p)
