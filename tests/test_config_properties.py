"""Property-based tests of config reading and dotted overrides (hypothesis).

* any config, of any field values, survives YAML and back unchanged;
* an override of any setting, of every field type (ints, floats incl. ``2e-3``, bools, tuples, Literals,
  nested sections, optionals, variant kinds), written as one would type it, sets exactly that value;
* random junk, in a file, in the data or on the command line, gives a ConfigError, never another exception.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any, Union

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a dev dependency (pip install -e '.[dev]')")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from vqforge.config import ConfigError, apply_overrides, dump_yaml, from_dict, load_yaml, to_dict  # noqa: E402
from vqforge.config.variants import own_variants  # noqa: E402
from vqforge.models.vqgan import VQGANConfig  # noqa: E402
from vqforge.quantizers import FSQConfig  # noqa: E402
from vqforge.models.conditioning import stage_modes  # noqa: E402
from vqforge.train.condition import ConditionRunConfig  # noqa: E402
from vqforge.train.transformer import TransformerRunConfig  # noqa: E402
from vqforge.train.vqgan import VQGANRunConfig  # noqa: E402

TOP = [VQGANRunConfig, TransformerRunConfig, ConditionRunConfig, VQGANConfig]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.filter_too_much])
ROUND_TRIP = settings(FAST, max_examples=15)  # whole configs are slow to draw
TEXT = st.text(st.characters(whitelist_categories=("L", "N", "P", "S", "Zs")), max_size=12)
NULLS = {"null", "Null", "NULL", "~", "none", "None"}


# ---------------------------------------------------------------------------------------------- strategies
def values(tp: Any) -> st.SearchStrategy:
    """Any value of the annotation ``tp`` (configs built through their own constructor and checks)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return st.one_of(*[st.none() if a is type(None) else values(a) for a in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if dataclasses.is_dataclass(tp):
        fam = own_variants(tp)
        return st.one_of(*map(configs, fam.classes.values())) if fam else configs(tp)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return st.tuples(*map(values, args))
    if origin is tuple:
        return st.lists(values(args[0]), max_size=4).map(tuple)
    floats = st.floats(allow_nan=False) | st.builds(lambda m, e: float(f"{m}e{e}"), st.integers(-99, 99),
                                                    st.integers(-8, 8))  # 2e-3 and the like
    return {int: st.integers(-10**6, 10**6), float: floats, bool: st.booleans(), str: TEXT}[tp]


#: settings tied together by a config's own checks, chosen to agree
REPAIRS = {FSQConfig: lambda kw: {**kw, "n_embed": math.prod(kw["levels"])},
           # a condition stage's mode names a mode that trains one: the drawn text picks one
           ConditionRunConfig: lambda kw: {**kw, "mode": stage_modes()[len(kw["mode"]) % len(stage_modes())]}}


def _construct(cls: type, kwargs: dict) -> Any:
    try:
        return cls(**REPAIRS.get(cls, dict)(kwargs))
    except (ConfigError, ValueError):
        return None


def configs(cls: type) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    fields = {f.name: values(hints[f.name]) for f in dataclasses.fields(cls)}
    return st.fixed_dictionaries(fields).map(lambda kw: _construct(cls, kw)).filter(lambda c: c is not None)


def leaves(cfg: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, annotation, owner config)`` of every setting of ``cfg`` (sections followed)."""
    out = []
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out += leaves(value, key + ".")
        elif not (value is None and any(dataclasses.is_dataclass(a) for a in typing.get_args(hints[f.name]))):
            out.append((key, hints[f.name], cfg))
    return out


def as_text(value: Any, tp: Any, draw) -> str:
    """``value`` as one would type it on the command line."""
    if value is None:
        return draw(st.sampled_from(sorted(NULLS)))
    if isinstance(value, bool):
        return draw(st.sampled_from(["true", "True", "yes", "on"] if value else ["false", "False", "no", "off"]))
    if isinstance(value, float):
        if math.isinf(value):
            return "-.inf" if value < 0 else ".inf"
        return draw(st.sampled_from([repr(value), f"{value:.17e}", _exponent_text(value)]))
    if isinstance(value, tuple):
        items = [as_text(v, Any, draw) for v in value]
        # a text item that YAML reads as something else ("0", "true") is typed quoted, as a user would type it
        quoted = [json.dumps(v) if isinstance(v, str) and not _reads_as(t, v) else t for v, t in zip(value, items)]
        if quoted != items:
            return f"[{', '.join(quoted)}]"
        return draw(st.sampled_from([f"[{', '.join(items)}]", ",".join(items)] if len(items) > 1
                                    else [f"[{', '.join(items)}]"]))
    return str(value)


def _reads_as(text: str, value: Any) -> bool:
    """Whether YAML reads ``text`` as ``value`` (text YAML cannot parse, such as ``{``, must be quoted too)."""
    try:
        return yaml.safe_load(text) == value
    except yaml.YAMLError:
        return False


def _exponent_text(value: float) -> str:
    """The shortest exact ``<mantissa>e<exponent>`` form: ``0.002`` -> ``2e-3`` (YAML 1.1 reads it as text)."""
    text = next(t for t in (f"{value:.{p}e}" for p in range(18)) if float(t) == value)
    mantissa, exponent = text.split("e")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    return f"{mantissa}e{int(exponent)}"


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _owner_accepts(owner: Any, name: str, value: Any) -> bool:
    """Whether the setting's own class accepts ``value`` (its checks), independently of overrides."""
    try:
        dataclasses.replace(owner, **{name: value})
        return True
    except (ConfigError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("cls", TOP, ids=lambda c: c.__name__)
def test_any_config_survives_yaml_and_back(cls, tmp_path):
    @ROUND_TRIP
    @given(configs(cls))
    def check(cfg):
        path = tmp_path / "c.yaml"
        path.write_text(dump_yaml(cfg))
        assert load_yaml(cls, path) == cfg
        assert from_dict(cls, yaml.safe_load(dump_yaml(cfg))) == cfg

    check()


def test_overrides_are_tested_on_every_field_type():
    kinds = set()
    for cls in TOP:
        for _, tp, _ in leaves(cls()):
            args = typing.get_args(tp)
            kinds.add("optional" if type(None) in args else typing.get_origin(tp) or tp)
    assert kinds >= {int, float, bool, str, tuple, typing.Literal, "optional"}


@pytest.mark.parametrize("cls", TOP, ids=lambda c: c.__name__)
def test_an_override_of_any_setting_sets_that_value(cls):
    base = cls()
    settings_ = leaves(base)

    @FAST
    @given(st.data())
    def check(data):
        key, tp, owner = data.draw(st.sampled_from(settings_))
        value = data.draw(values(tp))
        text = as_text(value, tp, data.draw)
        if isinstance(value, str) and type(None) in typing.get_args(tp):
            assume(value.strip() not in NULLS)  # "null" means None for an optional setting
        if isinstance(value, tuple):  # an empty or blank text item cannot be typed in a list ("[, ]", "[]")
            assume(all(not isinstance(v, str) or v.strip() for v in value))
        if not _owner_accepts(owner, key.rsplit(".", 1)[-1], value):
            with pytest.raises(ConfigError):
                apply_overrides(base, [f"{key}={text}"])
            return
        got = _get(apply_overrides(base, [f"{key}={text}"]), key)
        assert got == value and type(got) is type(value)

    check()


def test_overrides_switch_variant_kinds_and_reach_their_settings():
    @FAST
    @given(values(_quantizer_type()), st.data())
    def check(q, data):
        items = [f"quantizer.kind={q.kind}"]
        for key, tp, _ in leaves(q):
            items.append(f"quantizer.{key}={as_text(getattr(q, key), tp, data.draw)}")
        order = data.draw(st.permutations(items))  # the kind may come after its own settings
        assert apply_overrides(VQGANConfig(), order).quantizer == q

    check()


def _quantizer_type() -> Any:
    return typing.get_type_hints(VQGANConfig)["quantizer"]


# ---------------------------------------------------------------------------------------------- junk
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT | st.integers(), inner, max_size=4),
    max_leaves=12)


def _only_config_errors(call) -> None:
    try:
        call()
    except ConfigError as e:
        assert str(e) and "Traceback" not in str(e)


@pytest.mark.parametrize("cls", TOP, ids=lambda c: c.__name__)
def test_junk_data_gives_config_errors_only(cls):
    keys = [k for k, _, _ in leaves(cls())]

    @FAST
    @given(JUNK, st.sampled_from(keys), JUNK)
    def check(junk, key, leaf_junk):
        _only_config_errors(lambda: from_dict(cls, junk))
        data = to_dict(cls())  # a valid config with one setting replaced by junk
        node = data
        *head, last = key.split(".")
        for part in head:
            node = node[part]
        node[last] = leaf_junk
        _only_config_errors(lambda: from_dict(cls, data))

    check()


@pytest.mark.parametrize("cls", TOP, ids=lambda c: c.__name__)
def test_junk_overrides_give_config_errors_only(cls):
    keys = [k for k, _, _ in leaves(cls())]
    word = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=16)

    @FAST
    @given(st.lists(st.one_of(word, st.tuples(st.sampled_from(keys) | word, word).map("=".join)), max_size=4))
    def check(items):
        _only_config_errors(lambda: apply_overrides(cls(), items))

    check()


def test_junk_files_give_config_errors_only(tmp_path):
    @FAST
    @given(st.binary(max_size=200) | TEXT.map(str.encode) | JUNK.map(lambda j: yaml.safe_dump(j).encode()))
    def check(raw):
        path = tmp_path / "junk.yaml"
        path.write_bytes(raw)
        _only_config_errors(lambda: load_yaml(VQGANRunConfig, path))

    check()
