"""The model directory format and its one reader: ``model.yaml`` (``format_version``, ``kind``, ``config`` and the
model card under ``extra``) beside ``model.safetensors`` (the weights). :func:`vqforge.api.save_model` writes one;
loading (:mod:`vqforge.api`), the model card, the bundled models' list and the Hub read it through
:func:`read_model_meta`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from .io import FORMAT_VERSION, VQForgeError, read_yaml

MODEL_YAML = "model.yaml"
MODEL_WEIGHTS = "model.safetensors"


class ModelMeta(NamedTuple):
    """What a ``model.yaml`` says: the model ``kind`` (``vqgan``, ``transformer``), its ``config`` (plain data, read
    by the kind's config class), its ``card`` (the ``extra`` record: summary, sampling settings, label names; {}
    when none) and the file it came from (``source``, for messages)."""

    kind: str
    config: dict
    card: dict
    source: Path


def is_model_dir(path: str | Path) -> bool:
    """Whether ``path`` is a model directory (it holds a ``model.yaml``)."""
    return Path(path).is_dir() and (Path(path) / MODEL_YAML).is_file()


def check_format_version(version: Any, source: str | Path) -> None:
    """A file's ``format_version`` is one this vqforge reads (missing counts as 1); VQForgeError naming ``source``."""
    if version is None or not isinstance(version, int) or version > FORMAT_VERSION:
        raise VQForgeError(f"{source}: unsupported format_version {version!r} "
                           f"(this vqforge reads up to {FORMAT_VERSION})")


def read_model_meta(path: str | Path) -> ModelMeta:
    """The ``model.yaml`` of the model directory ``path`` (or that file itself), checked: a mapping with ``kind``
    and ``config`` and a readable ``format_version``. Raises VQForgeError naming the file."""
    path = Path(path)
    source = path / MODEL_YAML if path.is_dir() else path
    meta = read_yaml(source)
    if not isinstance(meta, dict) or "kind" not in meta or "config" not in meta:
        raise VQForgeError(f"{source}: not a vqforge model description (needs 'kind' and 'config')")
    check_format_version(meta.get("format_version"), source)
    card = meta.get("extra")
    return ModelMeta(str(meta["kind"]), meta["config"], card if isinstance(card, dict) else {}, source)
