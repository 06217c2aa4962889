"""Dotted ``key=value`` overrides from the command line, read according to the type of the setting."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, NamedTuple, Sequence, TypeVar, Union


from ..io import parse_yaml
from .errors import join_key
from .read import Reader, init_fields, set_path, to_dict, type_hints
from .variants import Variants, own_variants

T = TypeVar("T")
_KEY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_NULL = ("null", "Null", "NULL", "~", "none", "None")


class Target(NamedTuple):
    """Where an override lands: the path of keys (old names already renamed), the setting's annotation
    (None when the path is not a known setting) and, for a variant's tag (``model.quantizer.kind``), the
    family of variants."""

    parts: list[str]
    annotation: Any
    family: Variants | None = None


def apply_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """A copy of ``cfg`` with dotted ``key=value`` overrides applied and type-checked, all problems at once.

    Values are read as the setting's type: strings verbatim, numbers as numbers (``2e-3`` too), lists
    as YAML (``[1, 2]``) or comma-separated (``1,2``), ``null`` for optional settings. Overrides that switch
    a variant (``model.quantizer.kind=ema``) apply first, keeping the settings the new kind shares with the
    old one, so that the other overrides may set the new kind's settings in any order.

    >>> apply_overrides(cfg, ["model.gpt.n_layer=12", "train.lr=3e-4"])  # doctest: +SKIP
    """
    reader = Reader(upgrade=False)  # the data is the current layout: an old kind's key is a mistake here
    data = to_dict(cfg)
    items = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not _KEY.match(key.strip()):
            reader.problem("", f"override {item!r} is not of the form key=value (e.g. model.gpt.n_layer=12)")
        else:
            items.append((key.strip(), text))
    rest = []
    for key, text in items:
        target = resolve(type(cfg), data, key.split("."), reader)
        if target.family is not None:
            _switch_variant(data, target.parts, target.family, text)
        else:
            rest.append((key, text))
    for key, text in rest:
        target = resolve(type(cfg), data, key.split("."), reader)
        clash = set_path(data, target.parts, parse_text(text, target.annotation))
        if clash:
            reader.problem(key, f"{clash} is a setting, not a section")
    return reader.finish(reader.build(type(cfg), data, ""))


def resolve(cls: type, data: dict, parts: list[str], reader: Reader) -> Target:
    """Follow the key ``parts`` through the config classes from ``cls`` (variants by the tags in ``data``),
    renaming old keys (with a notice)."""
    parts, node, i = list(parts), data, 0
    while i < len(parts):
        fam = own_variants(cls)
        if fam is not None:
            if parts[i] == fam.tag and i == len(parts) - 1:
                return Target(parts, str, fam)
            cls = fam.classes.get(node.get(fam.tag, fam.default) if isinstance(node, dict) else fam.default)
            if cls is None:
                break
        renamed = _renamed_prefix(cls, parts[i:])
        if renamed is not None:
            old, new = renamed
            where = ".".join(parts[:i])
            reader.notices.append(f"{join_key(where, '.'.join(old))} is now {join_key(where, new)} (renamed)")
            parts[i:i + len(old)] = new.split(".")
            continue
        if parts[i] not in init_fields(cls):
            break
        annotation = type_hints(cls)[parts[i]]
        if i == len(parts) - 1:
            return Target(parts, annotation)
        node = node.get(parts[i]) if isinstance(node, dict) else None
        cls = _config_class(annotation)
        i += 1
        if cls is None:
            break
    return Target(parts, None)


def _renamed_prefix(cls: type, parts: list[str]) -> tuple[list[str], str] | None:
    for old, new in getattr(cls, "renamed_keys", {}).items():
        old_parts = old.split(".")
        if new is not None and parts[: len(old_parts)] == old_parts and parts[0] not in init_fields(cls):
            return old_parts, new
    return None


def _config_class(annotation: Any) -> type | None:
    """The config dataclass of a section's annotation (``X`` or ``X | None``), else None."""
    arms = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    if len(arms) == 1 and dataclasses.is_dataclass(arms[0]):
        return arms[0]
    return None


def _switch_variant(data: dict, parts: list[str], family: Variants, name: str) -> None:
    """Set a variant's tag; keep only the settings that the new variant shares with the old."""
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    new = family.classes.get(name)
    keep = {k: v for k, v in node.items() if new is not None and k in init_fields(new)}
    node.clear()
    node[parts[-1]] = name
    node.update(keep)


def parse_text(text: str, annotation: Any) -> Any:
    """The command-line text of an override as a value for a setting of type ``annotation`` (None when
    unknown: read as YAML); the config's own checks then report a value of the wrong type."""
    arms = [annotation]
    if typing.get_origin(annotation) in (Union, types.UnionType):
        arms = list(typing.get_args(annotation))
        if type(None) in arms and text.strip() in _NULL:
            return None
        arms = [a for a in arms if a is not type(None)]
    if annotation is not None and all(_is_text(a) for a in arms):
        return text
    try:
        value = parse_yaml(text)
    except ValueError:  # anything YAML cannot read stays text; the type check reports it
        return text
    if isinstance(value, str) and "," in value and any(typing.get_origin(a) in (tuple, list) for a in arms):
        try:
            value = parse_yaml(f"[{text}]")
        except ValueError:
            return text
    return value


def _is_text(annotation: Any) -> bool:
    if annotation is str:
        return True
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) is typing.Literal and all(isinstance(a, str) for a in args)
