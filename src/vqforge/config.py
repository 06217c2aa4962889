"""Typed, frozen configuration dataclasses: YAML in and out, dotted overrides checked against the types.

Every component of vqforge has a ``@dataclass(frozen=True)`` config. This module knows how to turn any
such dataclass into plain YAML-able data (:func:`to_dict`), how to rebuild it with type checks
(:func:`from_dict`), and how to apply command-line overrides such as ``model.n_layer=12``
(:func:`apply_overrides`). There are no string import targets and no ``exec``.

A *family* of configs told apart by a tag field (e.g. the conditioning modes, ``cond.mode``) is declared by
a base dataclass that defines a classmethod ``config_variant(data, where) -> (member class, data)``: a field
annotated with the base is built as the member its data names (the base may also convert old records there).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


def to_dict(cfg: Any) -> Any:
    """Convert a (nested) config dataclass into plain dicts, lists and scalars."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists to tuples, ints to floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} is not a {_type_name(tp)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            items = tuple(_convert(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        else:
            sub = args[0] if args else Any
            items = tuple(_convert(v, sub, f"{where}[{i}]") for i, v in enumerate(value))
        return items if origin is tuple else list(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_convert(k, kt, where): _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build the dataclass ``cls`` from plain data, checking every key and type.

    Missing keys take the dataclass defaults; unknown keys are an error that names them.
    """
    data = dict(data or {})
    if "config_variant" in vars(cls):  # the base of a family: build the member that the data names
        cls, data = cls.config_variant(data, where)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + u for u in unknown)} for {cls.__name__}; "
            f"known: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            key = f"{where}.{f.name}" if where else f.name
            kwargs[f.name] = _convert(data[f.name], hints[f.name], key)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field without default is missing
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def _parse_value(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:  # YAML 1.1 reads exponents without a dot ("2e-3") as strings
            return float(value) if any(ch.isdigit() for ch in value) else value
        except ValueError:
            return value
    return value


def apply_overrides(cfg: T, overrides: list[str] | tuple[str, ...]) -> T:
    """Return a copy of ``cfg`` with dotted ``key=value`` overrides applied and type-checked.

    >>> apply_overrides(cfg, ["model.n_layer=12", "train.lr=3e-4"])  # doctest: +SKIP
    """
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"override {key!r}: no config section {'.'.join(parts[: i + 1])!r}")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError(f"override {key!r}: unknown key")
        node[parts[-1]] = _parse_value(text)
    return from_dict(type(cfg), data)


def dump_yaml(cfg: Any) -> str:
    """Serialise a config dataclass (or plain data) to YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Read ``path`` and build ``cls`` from it, with errors that name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
