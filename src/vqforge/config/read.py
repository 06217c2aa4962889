"""Reading and writing config dataclasses: plain data and YAML in, checked config objects out."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar, Union

import yaml

from ..io import read_yaml
from .errors import ConfigError, join_key, notice, show
from .variants import Variants, family_of, own_variants, variant_tag

T = TypeVar("T")
INVALID = object()  # a value that could not be read (its problem has been recorded)
_NUMBER = re.compile(r"[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?$")


# ------------------------------------------------------------------------------------------ writing
def to_dict(cfg: Any) -> Any:
    """Convert a (nested) config dataclass into plain dicts, lists and scalars (variants with their tag)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        tag = variant_tag(type(cfg))
        out: dict[str, Any] = {tag[0]: tag[1]} if tag else {}
        out.update({f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)})
        return out
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def dump_yaml(cfg: Any) -> str:
    """Serialise a config dataclass (or plain data) to YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


# ------------------------------------------------------------------------------------------ reading
@functools.lru_cache(maxsize=None)
def type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a config class (cached)."""
    return typing.get_type_hints(cls)


def init_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The settings of a config class by name."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def describe(tp: Any) -> str:
    """What a value of annotation ``tp`` looks like, for messages ("an integer", "a list of 2 numbers")."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (tuple, list):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            inner = {describe(a) for a in args}
            what = inner.pop() if len(inner) == 1 else "values"
            return f"a list of {len(args)} {_plural(what)}"
        return f"a list of {_plural(describe(args[0]))}" if args else "a list"
    if dataclasses.is_dataclass(tp):
        fam = own_variants(tp)
        return f"a mapping of {fam.family} settings" if fam else f"a mapping of {tp.__name__} settings"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}
    return names.get(origin or tp, getattr(tp, "__name__", str(tp)))


def _plural(what: str) -> str:
    for article in ("an ", "a "):
        if what.startswith(article):
            return what[len(article):] + "s"
    return what


class Reader:
    """One reading of plain data into config classes: collects every problem and notice on the way."""

    def __init__(self, upgrade: bool = True) -> None:
        self.problems: list[tuple[str, str]] = []
        self.notices: list[str] = []
        self.upgrade = upgrade  # let variant families rewrite older layouts (files, not command lines)

    def problem(self, key: str, message: str) -> Any:
        self.problems.append((key, message))
        return INVALID

    def finish(self, value: Any, source: str | Path | None = None) -> Any:
        """Print the notices; raise every problem as one :class:`ConfigError`; else return ``value``."""
        for text in dict.fromkeys(self.notices):  # each once, in order
            notice(f"{source}: {text}" if source else text)
        if self.problems:
            raise ConfigError(problems=self.problems, source=source)
        return value

    # -------------------------------------------------------------------------------- classes
    def build(self, cls: type, data: Any, where: str) -> Any:
        """An instance of the config class ``cls`` from the mapping ``data`` (keys named under ``where``)."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            return self.problem(where, f"expected {describe(cls)}, got {show(data)}")
        fam = own_variants(cls)
        if fam is not None:
            return self._build_variant(fam, data, where)
        data = self._apply_renames(cls, dict(data), where)
        fields, hints, tag = init_fields(cls), type_hints(cls), variant_tag(cls)
        kwargs, n_problems = {}, len(self.problems)
        for key, value in data.items():
            full = join_key(where, key)
            if tag and key == tag[0]:
                if value != tag[1]:
                    self.problem(full, f"is {show(value)}, but these are settings of {tag[0]} {tag[1]!r}")
            elif key not in fields:
                self.problem(full, "unknown key" + self._suggestion(cls, key, where))
            else:
                kwargs[key] = self.convert(value, hints[key], full)
        for name, f in fields.items():
            if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.problem(join_key(where, name), "missing (it has no default)")
        if len(self.problems) > n_problems:
            return INVALID
        try:
            return cls(**kwargs)
        except ConfigError as e:  # a check in __post_init__: keys relative to cls
            self.problems += [(join_key(where, k), m) for k, m in e.problems]
        except (TypeError, ValueError, ArithmeticError) as e:
            self.problem(where or cls.__name__, str(e))
        return INVALID

    def _build_variant(self, fam: Variants, data: dict, where: str) -> Any:
        name = data.get(fam.tag, fam.default)
        cls = fam.classes.get(name) if isinstance(name, str) else None
        if cls is None:
            got = f"{show(name)} is not one of" if fam.tag in data else "missing; one of"
            return self.problem(join_key(where, fam.tag), f"{got} {', '.join(fam.names())}")
        if self.upgrade and fam.upgrade is not None:
            data, notes = fam.upgrade(data, cls)
            self.notices += [f"{join_key(where, k)}: {text}" for k, text in notes]
        return self.build(cls, data, where)

    def _apply_renames(self, cls: type, data: dict, where: str) -> dict:
        for old, new in getattr(cls, "renamed_keys", {}).items():
            found, value = pop_path(data, old)
            if not found:
                continue
            if new is None:
                self.notices.append(f"{join_key(where, old)} is no longer used; ignored")
            elif get_path(data, new)[0]:
                self.problem(join_key(where, old), f"was renamed {join_key(where, new)}, which is also given; "
                                                   f"keep only {join_key(where, new)}")
            else:
                set_path(data, new, value)
                self.notices.append(f"{join_key(where, old)} is now {join_key(where, new)} (renamed)")
        return data

    @staticmethod
    def _suggestion(cls: type, key: Any, where: str) -> str:
        """What to say after "unknown key": the variants that have it, else a close name, else the names."""
        names = list(init_fields(cls))
        close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
        guess = f"did you mean {join_key(where, close[0])}?" if close else ""
        fam = family_of(cls)
        owners = [n for n, c in fam.classes.items() if key in init_fields(c)] if fam is not None else []
        if owners:  # a setting of another variant: say which one has it
            return (f" for {fam.tag} {variant_tag(cls)[1]!r} (a setting of {fam.tag} {', '.join(owners)}"
                    + (f"; {guess})" if guess else ")"))
        if guess:
            return f" ({guess})"
        return f" (known: {', '.join(names)})" if names else ""

    # -------------------------------------------------------------------------------- values
    def convert(self, value: Any, tp: Any, where: str) -> Any:
        """Check ``value`` against the annotation ``tp`` and convert it (lists to tuples, ints to floats)."""
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if tp is Any:
            return value
        if origin in (Union, types.UnionType):
            return self._convert_union(value, tp, args, where)
        if origin is typing.Literal:
            if any(type(value) is type(a) and value == a for a in args):
                return value
            return self.problem(where, f"{show(value)} is not one of {', '.join(str(a) for a in args)}")
        if dataclasses.is_dataclass(tp):
            return value if isinstance(value, tp) else self.build(tp, value, where)
        if origin in (tuple, list):
            return self._convert_sequence(value, tp, origin, args, where)
        if origin is dict or tp is dict:
            if not isinstance(value, dict):
                return self.problem(where, f"expected a mapping, got {show(value)}")
            kt, vt = args or (Any, Any)
            out = {self.convert(k, kt, where): self.convert(v, vt, join_key(where, k)) for k, v in value.items()}
            return INVALID if INVALID in out or INVALID in out.values() else out
        return self._convert_scalar(value, tp, where)

    def _convert_union(self, value: Any, tp: Any, args: tuple, where: str) -> Any:
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:  # Optional[X]: X's own problems say more than "expected X or null"
            return self.convert(value, arms[0], where)
        for arm in arms:
            trial = Reader(self.upgrade)
            converted = trial.convert(value, arm, where)
            if converted is not INVALID:
                self.notices += trial.notices
                return converted
        return self.problem(where, f"expected {describe(tp)}, got {show(value)}")

    def _convert_sequence(self, value: Any, tp: Any, origin: Any, args: tuple, where: str) -> Any:
        if not isinstance(value, (list, tuple)):
            return self.problem(where, f"expected {describe(tp)}, got {show(value)}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                return self.problem(where, f"expected {describe(tp)}, got {len(value)}: {show(value)}")
            subs = list(args)
        else:
            subs = [args[0] if args else Any] * len(value)
        items = [self.convert(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(subs, value))]
        if any(v is INVALID for v in items):
            return INVALID
        return tuple(items) if origin is tuple else items

    def _convert_scalar(self, value: Any, tp: Any, where: str) -> Any:
        if tp is float:
            if isinstance(value, str) and _NUMBER.match(value.strip()):
                value = float(value)  # NOTE: YAML 1.1 reads exponents without a dot ("2e-3") as strings
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return self.problem(where, f"expected a number, got {show(value)}")
            try:
                return float(value)
            except OverflowError:
                return self.problem(where, f"expected a number, got {show(value)} (too large)")
        if tp is int:
            if isinstance(value, str) and _NUMBER.match(value.strip()) and "." not in value:
                number = float(value)  # "1e5": YAML 1.1 reads it as a string, as above
                value = int(number) if number.is_integer() and abs(number) < 2**63 else value
            if isinstance(value, bool) or not isinstance(value, int):
                return self.problem(where, f"expected an integer, got {show(value)}")
            return value
        if tp is bool and not isinstance(value, bool):
            return self.problem(where, f"expected true or false, got {show(value)}")
        if tp is str and not isinstance(value, str):
            return self.problem(where, f"expected a string, got {show(value)}")
        if isinstance(tp, type) and not isinstance(value, tp):
            return self.problem(where, f"expected {describe(tp)}, got {show(value)}")
        return value


# ------------------------------------------------------------------------------------------ paths
def get_path(data: Any, path: str | Sequence[str]) -> tuple[bool, Any]:
    """``(found, value)`` at the dotted ``path`` of nested dicts."""
    node = data
    for part in path.split(".") if isinstance(path, str) else path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def pop_path(data: dict, path: str) -> tuple[bool, Any]:
    """Remove and return ``(found, value)`` at the dotted ``path``; sections left empty go too."""
    *head, last = path.split(".")
    found, parent = get_path(data, head)
    if not found or not isinstance(parent, dict) or last not in parent:
        return False, None
    value = parent.pop(last)
    while head and parent == {}:
        *head, emptied = head
        parent = get_path(data, head)[1]
        del parent[emptied]
    return True, value


def set_path(data: dict, path: str | Sequence[str], value: Any) -> str | None:
    """Set ``value`` at the dotted ``path``, making sections as needed (an absent or null section becomes
    ``{}``). Returns the offending prefix when a part of the path is a setting rather than a section."""
    parts = path.split(".") if isinstance(path, str) else list(path)
    node = data
    for i, part in enumerate(parts[:-1]):
        if node.get(part) is None:
            node[part] = {}
        if not isinstance(node[part], dict):
            return ".".join(parts[: i + 1])
        node = node[part]
    node[parts[-1]] = value
    return None


# ------------------------------------------------------------------------------------------ entry points
def from_dict(cls: type[T], data: Any, where: str = "", *, source: str | Path | None = None) -> T:
    """Build the config class ``cls`` from plain data, checking every key and type.

    Missing keys take the defaults. Every problem (unknown key, wrong type, failed check) is collected
    and raised as one :class:`ConfigError`; keys are named under ``where`` and the error under ``source``.
    """
    reader = Reader()
    return reader.finish(reader.build(cls, data, where), source)


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Read ``path`` and build ``cls`` from it, with errors that name the file."""
    return from_dict(cls, read_yaml(path, ConfigError), source=path)
