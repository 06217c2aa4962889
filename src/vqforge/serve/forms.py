"""What a client may send: the server's limits, one typed record of job settings, and form parsing.

Every value a client sends arrives as text in a form field; :func:`parse_settings` turns the fields into a
:class:`JobSettings` or raises :class:`BadInput` with one line that names the field and the problem.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Mapping

from ..io import VQForgeError
from ..sampling.defaults import SAMPLING_DEFAULTS

TASKS = ("sample", "synthesize", "complete", "reconstruct")


class BadInput(VQForgeError):
    """A client error: one line for the client, and the HTTP status to answer with (400 unless said)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (``vqforge serve`` flags of the same names).

    max_upload_mb: request body size. max_upload_pixels: pixels of an uploaded image, checked before it is
    decoded. max_side: the largest output or input side in pixels the models work at. max_count: images per
    job. max_queue: jobs waiting or running at once (more are refused with 503). keep_jobs: finished jobs whose
    results stay downloadable (oldest dropped first).
    """

    max_upload_mb: float = 8.0
    max_upload_pixels: int = 4096 * 4096
    max_side: int = 1024
    max_count: int = 8
    max_queue: int = 32
    keep_jobs: int = 64

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    def __post_init__(self):
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise VQForgeError(f"--{f.name.replace('_', '-')} must be > 0, got {getattr(self, f.name)}")


@dataclass(frozen=True)
class JobSettings:
    """The settings of one job (unused fields are ignored by tasks they do not apply to).

    height/width: output size in pixels (None: the model's trained size; synthesis takes the map's size).
    class_label: class of class-conditional models (None: cycle through all classes). top_k 0 and top_p 1.0
    switch those filters off; cfg 0 switches guidance off. paste_back (complete): the original pixels are put
    back outside the mask (False: the raw decode).
    """

    model: str
    count: int = 1
    height: int | None = None
    width: int | None = None
    class_label: int | None = None
    top_k: int = SAMPLING_DEFAULTS["top_k"]  # the one table (vqforge.sampling.defaults); the page sends the card's
    top_p: float = 1.0
    temperature: float = SAMPLING_DEFAULTS["temperature"]
    cfg: float = SAMPLING_DEFAULTS["cfg"]
    seed: int = 0
    paste_back: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def _number(name: str, text: str, kind: type, lo: float, hi: float, meaning: str):
    try:
        value = kind(text.strip())
    except ValueError:
        raise BadInput(f"{name}: expected {'a whole number' if kind is int else 'a number'}, "
                       f"got {text[:40]!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise BadInput(f"{name}: expected a finite number, got {text[:40]!r}")
    if not lo <= value <= hi:
        raise BadInput(f"{name}: {text.strip()[:40]} is {'too small' if value < lo else 'too large'}: {meaning}")
    return value


def _switch(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value not in ("1", "0", "true", "false", "on", "off"):
        raise BadInput(f"{name}: expected true or false, got {text[:40]!r}")
    return value in ("1", "true", "on")


#: what each number means and may be, for the error that says it is out of range
MEANINGS = {
    "count": "ask for 1 to {max_count} images (the server's --max-count)",
    "height": "an output side is 1 to {max_side} px (the server's --max-side)",
    "width": "an output side is 1 to {max_side} px (the server's --max-side)",
    "class_label": "class ids start at 0 (GET /api/models lists them)",
    "top_k": "0 turns top-k off, otherwise it is how many of the most likely tokens to keep",
    "top_p": "the nucleus mass is above 0 and at most 1 (1 turns it off)",
    "temperature": "the temperature is 0.001 to 100 (1 = the model's own distribution)",
    "cfg": "the guidance scale is 0 (off) to 100",
    "seed": "a seed is a whole number from 0 to 2^63 - 1",
}


def parse_settings(form: Mapping[str, str], limits: Limits, files: tuple[str, ...] = (),
                   defaults: Mapping[str, float | None] | None = None) -> JobSettings:
    """Typed, bounded :class:`JobSettings` from form fields; unknown fields are an error (typos stay visible).

    ``defaults``: the sampling settings a field left out takes (the model's: :meth:`Engine.defaults
    <vqforge.serve.engine.Engine.defaults>`, which the page shows too), else :class:`JobSettings`' own.
    """
    known = {f.name for f in fields(JobSettings)}
    unknown = sorted(set(form) - known - set(files))
    if unknown:
        raise BadInput(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(known | set(files)))})")
    model = form.get("model", "").strip()
    if not model:
        raise BadInput("model: missing (see GET /api/models)")
    bounds = {
        "count": (int, 1, limits.max_count), "height": (int, 1, limits.max_side), "width": (int, 1, limits.max_side),
        "class_label": (int, 0, 2**31 - 1), "top_k": (int, 0, 2**31 - 1), "top_p": (float, 1e-6, 1.0),
        "temperature": (float, 1e-3, 100.0), "cfg": (float, 0.0, 100.0), "seed": (int, 0, 2**63 - 1),
    }
    values = {k: v for k, v in (defaults or {}).items() if k in ("top_k", "top_p", "temperature", "cfg")}
    for name, (kind, lo, hi) in bounds.items():
        text = form.get(name, "")
        if text.strip() != "":
            meaning = MEANINGS[name].format(max_count=limits.max_count, max_side=limits.max_side)
            values[name] = _number(name, text, kind, lo, hi, meaning)
    if form.get("paste_back", "").strip() != "":
        values["paste_back"] = _switch("paste_back", form["paste_back"])
    if ("height" in values) != ("width" in values):
        raise BadInput("height and width: give both or neither")
    return JobSettings(model=model, **values)
