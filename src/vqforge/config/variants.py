"""Families of config classes told apart by a tag key, e.g. the quantizer kinds (``kind: ema``)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

#: ``upgrade(data, cls) -> (data, notices)``: rewrites an older layout of a variant's settings
Upgrade = Callable[[dict, type], "tuple[dict, list[tuple[str, str]]]"]


class Variants:
    """The config classes of one family (e.g. quantizer kinds), told apart in YAML by a tag (``kind: ema``).

    The family's base config class holds it as ``variants: ClassVar[Variants]``; a field annotated with
    the base accepts any variant. Each variant class names itself with a class variable of the tag's name
    (``kind: ClassVar[str] = "ema"``) and is registered with :meth:`add`.

    family: what the variants are, for messages ("quantizer kind"). default: the variant read when the
    tag is absent. upgrade: ``upgrade(data, cls) -> (data, notices)`` rewrites an older layout of a
    variant's settings before it is read; notices are ``(key, text)``.
    """

    def __init__(self, family: str, tag: str = "kind", default: str | None = None, upgrade: Upgrade | None = None):
        self.family, self.tag, self.default, self.upgrade = family, tag, default, upgrade
        self.classes: dict[str, type] = {}

    def add(self, cls: type) -> type:
        """Register the variant class ``cls`` under the name in its tag class variable."""
        self.classes[cls.__dict__[self.tag]] = cls
        return cls

    def names(self) -> list[str]:
        """The registered variant names."""
        return list(self.classes)


def own_variants(cls: type) -> Variants | None:
    """The :class:`Variants` whose base class is ``cls``, if any."""
    found = cls.__dict__.get("variants")
    return found if isinstance(found, Variants) else None


def family_of(cls: type) -> Variants | None:
    """The :class:`Variants` that the variant class ``cls`` belongs to, if any."""
    return next((f for f in map(own_variants, cls.__mro__[1:]) if f is not None), None)


def variant_tag(cls: type) -> tuple[str, str] | None:
    """``(tag key, name)`` of a variant class, e.g. ``("kind", "ema")``; None for other classes."""
    fam = family_of(cls)
    if fam is not None and fam.tag in cls.__dict__:
        return fam.tag, cls.__dict__[fam.tag]
    return None


def flat_record_upgrade(defaults: dict[str, Any], written: str, refused: frozenset[str] = frozenset()) -> Upgrade:
    """The upgrade of a family whose variants once shared one flat record (``defaults``: its settings and their
    defaults then): reading such a record as the variant it names keeps that variant's settings (old names are
    renamed by its ``renamed_keys``) and drops the others, silently at their old default, with a notice
    otherwise (the old code ignored them too). ``refused``: settings the old code refused rather than ignored
    for variants without them; they stay errors. ``written``: when such records were written, for the notice.
    """

    def upgrade(data: dict, cls: type) -> tuple[dict, list[tuple[str, str]]]:
        tag, name = variant_tag(cls)
        known = {f.name for f in dataclasses.fields(cls)} | set(getattr(cls, "renamed_keys", {})) | {tag}
        out, notices = {}, []
        for key, value in data.items():
            at_default = key in defaults and _same(value, defaults[key])
            if key in known or key not in defaults or (key in refused and not at_default):
                out[key] = value
            elif not at_default:
                notices.append((key, f"{value!r} is ignored: {tag} {name!r} has no such setting ({written})"))
        return out, notices

    return upgrade


def _same(a: Any, b: Any) -> bool:
    """``a == b`` as YAML values (a list equals a tuple; true is not 1)."""
    if isinstance(a, (list, tuple)):
        a = list(a)
    if isinstance(b, (list, tuple)):
        b = list(b)
    return a == b and isinstance(a, bool) == isinstance(b, bool)
