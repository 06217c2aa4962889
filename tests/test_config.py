"""Typed configs: YAML round trips and checked dotted overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

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
                                          "quantizer.beta=1", "quantizer.entropy_temperature=2e-3"])
    assert cfg.quantizer.entropy_temperature == 2e-3
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


# ---------------------------------------------------------------------------------------------- problems
def test_every_problem_at_once_with_keys_as_the_command_line_spells_them(tmp_path):
    from vqforge.train.transformer import TransformerRunConfig

    p = tmp_path / "run.yaml"
    p.write_text("model:\n  gpt: {vocab_size: big, n_layr: 3}\n  cond: {mode: klass}\n"
                 "train: {learning_rate: fast, max_steps: 1e5}\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(TransformerRunConfig, p)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{p}: 4 problems:"
    assert lines[1:3] == ["  model.gpt.vocab_size: expected an integer, got 'big'",
                          "  model.gpt.n_layr: unknown key (did you mean model.gpt.n_layer?)"]
    assert lines[3].startswith("  model.cond.mode: 'klass' is not one of") and "segmentation" in lines[3]
    assert lines[4] == "  train.learning_rate: expected a number, got 'fast'"
    assert [k for k, _ in info.value.problems][:2] == ["model.gpt.vocab_size", "model.gpt.n_layr"]
    # each key as reported is accepted by apply_overrides (the command line's form)
    fixed = apply_overrides(TransformerRunConfig(), ["model.gpt.vocab_size=512", "model.gpt.n_layer=3"])
    assert fixed.model.gpt.vocab_size == 512 and fixed.train.max_steps == TransformerRunConfig().train.max_steps


def test_wrong_value_types_in_a_file_and_on_the_command_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("ddconfig: {ch: 64.5, ch_mult: 2, attn_resolutions: [16, x], double_z: 'no'}\nquantizer: [1]\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(VQGANConfig, p)
    assert dict(info.value.problems) == {
        "ddconfig.ch": "expected an integer, got 64.5",
        "ddconfig.ch_mult": "expected a list of integers, got 2",
        "ddconfig.attn_resolutions[1]": "expected an integer, got 'x'",
        "ddconfig.double_z": "expected true or false, got 'no'",
        "quantizer": "expected a mapping of quantizer kind settings, got [1]"}
    with pytest.raises(ConfigError) as info:
        apply_overrides(VQGANConfig(), ["ddconfig.ch=wide", "ddconfig.dropout=lots", "quantizer.legacy=maybe"])
    assert dict(info.value.problems) == {"ddconfig.ch": "expected an integer, got 'wide'",
                                         "ddconfig.dropout": "expected a number, got 'lots'",
                                         "quantizer.legacy": "expected true or false, got 'maybe'"}


def test_override_values_are_read_as_the_setting_type():
    from vqforge.train.vqgan import VQGANRunConfig

    cfg = apply_overrides(VQGANRunConfig(), [
        "train.data=2020-01-01", "train.val_data=123", "train.learning_rate=3e-4", "train.max_steps=1e5",
        "model.ddconfig.ch_mult=1,2,4", "train.betas=[0.9, 0.99]", "train.flip=yes", "train.crop=center"])
    assert cfg.train.data == "2020-01-01" and cfg.train.val_data == "123"  # strings verbatim, never dates or ints
    assert cfg.train.learning_rate == 3e-4 and cfg.train.max_steps == 100_000
    assert cfg.model.ddconfig.ch_mult == (1, 2, 4) and cfg.train.betas == (0.9, 0.99)
    assert cfg.train.flip is True and cfg.train.crop == "center"


# ---------------------------------------------------------------------------------------------- renames
@dataclass(frozen=True)
class _Schedule:
    checkpoint_every: int = 100
    log_every: int = 10


@dataclass(frozen=True)
class _Run:
    renamed_keys: ClassVar[dict[str, str | None]] = {
        "accumulate": "accumulation", "train.ckpt_every": "schedule.checkpoint_every", "old_flag": None}
    accumulation: int = 1
    schedule: _Schedule = field(default_factory=_Schedule)


def test_renamed_keys_load_with_one_notice_naming_the_new_key(tmp_path, capsys):
    p = tmp_path / "old.yaml"
    p.write_text("accumulate: 4\ntrain: {ckpt_every: 7}\nold_flag: true\n")
    cfg = load_yaml(_Run, p)
    assert cfg == _Run(accumulation=4, schedule=_Schedule(checkpoint_every=7))
    assert capsys.readouterr().err.splitlines() == [
        f"vqforge: {p}: accumulate is now accumulation (renamed)",
        f"vqforge: {p}: train.ckpt_every is now schedule.checkpoint_every (renamed)",
        f"vqforge: {p}: old_flag is no longer used; ignored"]
    # the old name on the command line replaces the value of the new one
    assert apply_overrides(_Run(), ["accumulate=3", "train.ckpt_every=5"]) == _Run(3, _Schedule(checkpoint_every=5))
    assert "accumulate is now accumulation" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="accumulate: was renamed accumulation, which is also given; keep only"):
        from_dict(_Run, {"accumulate": 2, "accumulation": 3})


# ---------------------------------------------------------------------------------------------- command line
def test_overrides_anywhere_after_the_subcommand():
    from vqforge.cli import parse_args

    args = parse_args(["train", "vqgan", "a.b=1", "--config", "c.yaml", "c.d=2", "--out", "o", "e=3"])
    assert args.overrides == ["a.b=1", "c.d=2", "e=3"] and args.config == "c.yaml" and args.out == "o"
    args = parse_args(["train", "transformer", "--config", "c.yaml", "model.gpt.n_layer=2", "--data", "t"])
    assert args.overrides == ["model.gpt.n_layer=2"] and args.data == "t"


def test_cli_reports_every_override_problem_in_one_line_each(tmp_path, capsys):
    from dataclasses import fields

    from vqforge.cli import main
    from vqforge.train.vqgan import VQGANSettings

    tiny = Path(__file__).parents[1] / "configs" / "vqgan_tiny.yaml"
    code = main(["train", "vqgan", "train.nope=1", "--config", str(tiny), "train.batch_size=many",
                 "--data", str(tmp_path), "--out", str(tmp_path / "run"), "model.quantizer.kind=lfq"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = err.splitlines()
    assert lines[0] == "vqforge: error: 3 problems:" and sorted(lines[1:]) == [
        "  model.quantizer.kind: 'lfq' is not one of vq, gumbel, ema, l2, fsq",
        "  train.batch_size: expected an integer, got 'many'",
        "  train.nope: unknown key (known: " + ", ".join(f.name for f in fields(VQGANSettings)) + ")"]
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):
        main(["train", "vqgan", "--config", str(tiny), "--bogus"])
    assert "vqforge train vqgan: error: unrecognized arguments: --bogus" in capsys.readouterr().err


def test_shipped_configs_resolve_by_name_and_ship_in_the_wheel(tmp_path, capsys):
    """`--config vqgan_tiny` finds the config shipped inside the package (what a wheel user has, with no checkout's
    configs/); a file path still wins; an unknown name is one line naming the presets; pyproject's package data
    covers every shipped config."""
    import fnmatch
    import tomllib

    from vqforge.cli import main
    from vqforge.config.presets import PRESETS_DIR, presets, resolve_config

    repo = Path(__file__).parents[1]
    assert PRESETS_DIR.parent.name == "vqforge" and {"vqgan_tiny", "bundled/fashion_vqgan"} <= set(presets())
    assert resolve_config("vqgan_tiny") == PRESETS_DIR / "vqgan_tiny.yaml"
    assert resolve_config("bundled/landscape_seg.yaml") == PRESETS_DIR / "bundled" / "landscape_seg.yaml"
    assert (repo / "configs" / "vqgan_tiny.yaml").read_bytes() == resolve_config("vqgan_tiny").read_bytes()
    mine = tmp_path / "vqgan_tiny"
    mine.write_text("model: {}\n")
    assert resolve_config(str(mine)) == mine  # an existing file is taken as given
    with pytest.raises(ConfigError, match="not a config shipped with vqforge .*seg_tiny, transformer_cpu"):
        resolve_config("vqgan_nope")

    code = main(["train", "vqgan", "--config", "vqgan_nope", "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("vqforge: error: --config vqgan_nope: no such file") and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()

    globs = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["vqforge"]
    for name in presets():
        rel = f"configs/{name}.yaml"
        assert any(fnmatch.fnmatch(rel, g) and rel.count("/") == g.count("/") for g in globs), f"{rel} not packaged"
