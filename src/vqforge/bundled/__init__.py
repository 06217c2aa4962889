"""Trained models that ship with vqforge, loadable by name: ``vqforge.load("fashion")``.

Each bundled model is a model directory inside this package (``<name>/model.yaml`` + ``model.safetensors``,
weights stored as float16 to keep the package small and loaded into float32 models). Its ``model.yaml`` carries
a model card under ``extra``: ``summary`` (what it is for), ``trained_on``, ``command``, ``steps``,
``wall_time``, ``machine``, ``metrics`` and ``sampling`` (suggested sampling settings). ``docs/models.md`` says how
each was trained, and ``vqforge demo --retrain`` reproduces them from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..modeldir import MODEL_WEIGHTS, is_model_dir, read_model_meta

BUNDLED_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BundledModel:
    """A model that ships with vqforge: its ``name``, its model directory ``path`` and its model card."""

    name: str
    path: Path
    kind: str
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return str(self.card.get("summary", ""))


def list_models() -> list[BundledModel]:
    """Every bundled model present in this installation, by name."""
    out = []
    for d in sorted(p for p in BUNDLED_DIR.iterdir() if p.is_dir()):
        if not is_model_dir(d) or not (d / MODEL_WEIGHTS).is_file():
            continue
        meta = read_model_meta(d)
        out.append(BundledModel(d.name, d, meta.kind, meta.card))
    return out


def names() -> list[str]:
    """Names of the bundled models (``vqforge models`` lists them with what each is for)."""
    return [m.name for m in list_models()]


def find(name: str) -> BundledModel | None:
    """The bundled model called ``name``, or None."""
    return next((m for m in list_models() if m.name == name), None)
