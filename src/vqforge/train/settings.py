"""One vocabulary of training settings for every trainer, and the reading of older names.

Every run config has a ``train:`` section whose class derives from :class:`TrainSettings`: the same key
means the same thing in ``vqforge train vqgan``, ``train transformer`` and ``train condition`` (data,
batch, accumulation, learning rate, precision, EMA, the log/validate/preview/checkpoint schedule, ...).
A stage adds only what is its own (e.g. the transformer's warmup, the VQGAN's ``channels_last``).

Config files, checkpoints and command-line overrides written with older names still load, with one notice
naming the new key: plain renames are each run config's ``renamed_keys`` (the config package's mechanism,
e.g. ``schedule.ckpt_every`` -> ``train.checkpoint_every``, ``train.accumulate`` -> ``train.accumulation``);
keys whose values changed meaning are read by :class:`OldValues` (``bf16``/``cpu_bf16`` ->
``train.precision``, ``ema.enabled``/``ema.decay`` -> ``train.ema_decay``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

from ..config import ConfigError, apply_overrides, from_dict, notice
from ..devices import Precision
from ..io import parse_yaml, read_yaml

T = TypeVar("T")


@dataclass(frozen=True)
class TrainSettings:
    """The settings every trainer shares (the ``train:`` section of a run config).

    Data: ``data`` / ``val_data`` (set by ``--data`` / ``--val-data``); without ``val_data``, ``val_fraction``
    of ``data`` is held out (deterministically, by ``seed``). ``image_size``: crop side; ``resize``: the
    smallest side is resized to this before cropping (0: ``image_size``); ``resize_max`` > ``resize``: each
    random training crop draws the smallest side from ``[resize, resize_max]`` (several scales); ``crop``:
    training crops (validation always uses center crops); ``flip``: random horizontal flips;
    ``batch_size``: per process; ``workers``: DataLoader processes per process; ``shuffle_buffer``: samples
    each worker shuffles through when ``data`` is tar shards (``DIR/shard-{000000..000099}.tar``).

    Optimisation: ``max_steps``; ``accumulation``: micro-batches per step; ``learning_rate`` (> 0: used as
    is; 0: ``base_learning_rate`` x batch_size x accumulation x processes when ``scale_lr``, the original's
    rule; the resolved value is written back into the run's config); ``betas``; ``grad_clip``: clip the
    gradients' total norm to this (0 = off); ``ema_decay``: keep an exponential moving average of the
    weights (0 = off; ``vqforge.load`` returns the average); ``max_nonfinite``: stop after this many steps in
    a row with a non-finite loss or gradient (each such step is skipped with a warning).

    Schedule (in steps, 0 = never): ``log_every`` (scalars), ``val_every`` (validation), ``preview_every``
    (an image grid in ``images/``), ``checkpoint_every`` (``checkpoints/last.pt``), ``keep_every`` (also
    ``checkpoints/step_NNNNNNN.pt``); ``patience``: warn when validation got worse this many evaluations in
    a row (0 = never).

    Run: ``seed``, ``device`` (auto, cpu, cuda, cuda:N), ``precision`` (auto, bf16, fp32: see
    :mod:`vqforge.devices`; bf16 autocast keeps fp32 weights, optimiser state and losses).
    """

    data: str = ""
    val_data: str = ""
    val_fraction: float = 0.05
    image_size: int = 256
    resize: int = 0
    resize_max: int = 0
    crop: Literal["random", "center"] = "random"
    flip: bool = False
    batch_size: int = 12
    workers: int = 0
    shuffle_buffer: int = 1000
    max_steps: int = 100_000
    accumulation: int = 1
    learning_rate: float = 0.0
    base_learning_rate: float = 4.5e-6
    scale_lr: bool = True
    betas: tuple[float, float] = (0.5, 0.9)
    grad_clip: float = 0.0
    ema_decay: float = 0.0
    max_nonfinite: int = 10
    log_every: int = 50
    val_every: int = 1000
    preview_every: int = 1000
    checkpoint_every: int = 1000
    keep_every: int = 0
    patience: int = 3
    seed: int = 0
    device: str = "auto"
    precision: Precision = "auto"

    def check(self) -> None:
        """Raise :class:`ConfigError` for values no trainer can use."""
        problems = [f"train.{k} must be >= {lo}, got {v}" for k, lo, v in (
            ("batch_size", 1, self.batch_size), ("accumulation", 1, self.accumulation),
            ("image_size", 1, self.image_size), ("max_nonfinite", 1, self.max_nonfinite))
            if v < lo]
        if not 0.0 <= self.learning_rate < math.inf:  # 0: the original's rule (resolve_lr); < 0 was silently that
            problems.append(f"train.learning_rate must be a finite number >= 0 (0 = base_learning_rate scaled by the "
                            f"batch), got {self.learning_rate}")
        if not 0.0 < self.base_learning_rate < math.inf:
            problems.append(f"train.base_learning_rate must be a finite number > 0, got {self.base_learning_rate}")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"train.ema_decay must lie in [0, 1), got {self.ema_decay}")
        if problems:
            raise ConfigError("; ".join(problems))


def resolve_lr(s: TrainSettings, world_size: int) -> float:
    """The learning rate a run uses: ``learning_rate`` when > 0, else the original's scaling rule."""
    if s.learning_rate > 0:
        return s.learning_rate
    if s.scale_lr:
        return s.base_learning_rate * s.batch_size * s.accumulation * world_size
    return s.base_learning_rate


# ============================================================================================ older names
def _precision_from_flags(bf16: Any, cpu_bf16: Any) -> str:
    # bf16: false meant fp32 everywhere; bf16 + cpu_bf16 meant bf16 wherever native (today's auto).
    # bf16 alone meant bf16 on CUDA only: the nearest setting is auto (which also uses native CPU bf16).
    return "fp32" if bf16 is False else "auto"


@dataclass(frozen=True)
class OldValues:
    """Older settings whose *values* changed meaning, which a plain rename cannot carry.

    Plain renames are the run-config class's ``renamed_keys`` (:mod:`vqforge.config`: old key -> new key, one
    notice each, in files, checkpoints and overrides). Read here, before them: ``precision_flags`` (the old
    ``bf16`` / ``cpu_bf16`` pair -> ``train.precision``), ``ema`` (the old ``enabled`` / ``decay`` pair ->
    ``train.ema_decay``, 0 = off) and ``null_is_zero`` (keys whose ``null`` meant "derive", now 0).
    """

    precision_flags: tuple[str, str] | None = None  # (bf16 key, cpu_bf16 key)
    ema: tuple[str, str] | None = None  # (enabled key, decay key)
    null_is_zero: tuple[str, ...] = ()
    precision_key: str = "train.precision"
    ema_key: str = "train.ema_decay"

    def upgrade(self, data: dict[str, Any], source: str | Path) -> dict[str, Any]:
        """A copy of plain config ``data`` with the old value-carrying keys rewritten (one notice each)."""
        data = _deep_copy(data)
        for key in self.null_is_zero:
            found, value = _pop(data, key)
            if found:
                _put(data, key, 0.0 if value is None else value)
        if self.precision_flags:
            f1, b1 = _pop(data, self.precision_flags[0])
            f2, b2 = _pop(data, self.precision_flags[1])
            if f1 or f2:
                value = _precision_from_flags(b1 if f1 else True, b2 if f2 else False)
                _put(data, self.precision_key, value)
                notice(f"{source}: {'/'.join(self.precision_flags)} are now {self.precision_key} (auto|bf16|fp32); "
                       f"read as {value}")
        if self.ema:
            f1, enabled = _pop(data, self.ema[0])
            f2, decay = _pop(data, self.ema[1])
            if f1 or f2:
                value = float(decay if f2 else 0.999) if (enabled if f1 else True) else 0.0
                _put(data, self.ema_key, value)
                notice(f"{source}: {'/'.join(self.ema)} are now {self.ema_key} (0 = off); read as {value}")
        return data

    def upgrade_overrides(self, overrides: list[str] | tuple[str, ...], current: Any) -> list[str]:
        """Command-line ``key=value`` overrides with the old value-carrying keys rewritten (``current``: the
        config so far); plain renames are left to ``apply_overrides``."""
        out = []
        for item in overrides:
            key, sep, text = item.partition("=")
            key = key.strip()
            if sep and self.precision_flags and key in self.precision_flags:
                on = bool(_parse(text))
                value = ("auto" if on else _get(current, self.precision_key)) if key == self.precision_flags[1] \
                    else ("fp32" if not on else "auto")
                notice(f"override {key} is now {self.precision_key}; read as {value}")
                out.append(f"{self.precision_key}={value}")
            elif sep and self.ema and key in self.ema:
                if key == self.ema[0]:
                    now = _get(current, self.ema_key)
                    value = (now if now > 0 else 0.999) if _parse(text) else 0.0
                else:
                    value = float(_parse(text))
                notice(f"override {key} is now {self.ema_key} (0 = off); read as {value}")
                out.append(f"{self.ema_key}={value}")
            else:
                out.append(item)
        return out


def read_run_config(cls: type[T], path: str | Path, old: OldValues, overrides: list[str] | tuple[str, ...] = ()
                    ) -> T:
    """A run config from a YAML file (older names read with a notice) plus dotted ``key=value`` overrides."""
    path = Path(path)
    data = read_yaml(path, ConfigError)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of config sections, got {type(data).__name__}", source=path)
    cfg = config_from_data(cls, data or {}, old, path)
    return override(cfg, overrides, old)


def renamed_names(module: str, namespace: dict[str, Any], renamed: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for names renamed in the one vocabulary (docs/architecture.md, "Names"): an old
    name gives the object now called ``renamed[name]``, with a DeprecationWarning; kept for one release."""

    def old_name(name: str) -> Any:
        if name not in renamed:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} is now {module}.{renamed[name]}; the old name goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return namespace[renamed[name]]

    return old_name


#: the names before the one vocabulary: one release more, with a DeprecationWarning
__getattr__ = renamed_names(__name__, globals(), {"load_run_config": "read_run_config"})


def config_from_data(cls: type[T], data: dict[str, Any], old: OldValues, source: str | Path) -> T:
    """Build ``cls`` from plain data (a YAML file's or a checkpoint's), older names included."""
    return from_dict(cls, old.upgrade(data, source), source=source)


def override(cfg: T, overrides: list[str] | tuple[str, ...], old: OldValues) -> T:
    """``cfg`` with dotted overrides applied (older names read with a notice)."""
    return apply_overrides(cfg, old.upgrade_overrides(list(overrides), cfg)) if overrides else cfg


# -------------------------------------------------------------------------------------------- helpers
def _parse(text: str) -> Any:
    try:
        return parse_yaml(text)
    except ValueError:
        return text


def _deep_copy(d: Any) -> Any:
    return {k: _deep_copy(v) for k, v in d.items()} if isinstance(d, dict) else d


def _pop(data: dict, dotted: str) -> tuple[bool, Any]:
    """Remove ``dotted`` from ``data`` (and the sections it leaves empty); (found, value)."""
    *path, last = dotted.split(".")
    nodes = [data]
    for p in path:
        nxt = nodes[-1].get(p) if isinstance(nodes[-1], dict) else None
        if not isinstance(nxt, dict):
            return False, None
        nodes.append(nxt)
    if last not in nodes[-1]:
        return False, None
    value = nodes[-1].pop(last)
    for parent, key, node in reversed(list(zip(nodes, path, nodes[1:]))):
        if not node:
            del parent[key]
    return True, value


def _put(data: dict, dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    node = data
    for p in path:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node.setdefault(last, value)  # a value given under the new name wins


def _get(cfg: Any, dotted: str) -> Any:
    for p in dotted.split("."):
        cfg = getattr(cfg, p)
    return cfg
