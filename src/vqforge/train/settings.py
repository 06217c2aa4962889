"""One vocabulary of training settings for every trainer, and the reading of older names.

Every run config has a ``train:`` section whose class derives from :class:`TrainSettings`: the same key
means the same thing in ``vqforge train vqgan``, ``train transformer`` and ``train condition`` (data,
batch, accumulation, learning rate, precision, EMA, the log/validate/preview/checkpoint schedule, ...).
A stage adds only what is its own (e.g. the transformer's warmup, the VQGAN's ``channels_last``).

Config files, checkpoints and command-line overrides written with older names still load: each old key is
moved to its new place with one notice naming the new key (:class:`KeyMap`), e.g.
``schedule.ckpt_every`` -> ``train.checkpoint_every``, ``train.accumulate`` -> ``train.accumulation``,
``bf16``/``cpu_bf16`` -> ``train.precision``, ``ema.enabled``/``ema.decay`` -> ``train.ema_decay``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

from ..config import ConfigError, apply_overrides, from_dict
from ..devices import Precision

T = TypeVar("T")


@dataclass(frozen=True)
class TrainSettings:
    """The settings every trainer shares (the ``train:`` section of a run config).

    Data: ``data`` / ``val_data`` (set by ``--data`` / ``--val-data``); without ``val_data``, ``val_fraction``
    of ``data`` is held out (deterministically, by ``seed``). ``image_size``: crop side; ``resize``: the
    smallest side is resized to this before cropping (0: ``image_size``); ``resize_max`` > ``resize``: each
    random training crop draws the smallest side from ``[resize, resize_max]`` (several scales); ``crop``:
    training crops (validation always uses center crops); ``flip``: random horizontal flips;
    ``batch_size``: per process; ``workers``: DataLoader processes per process.

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
_SEEN: set[str] = set()


def notice(message: str) -> None:
    """Print ``vqforge: note: message`` to stderr, once per process."""
    if message not in _SEEN:
        _SEEN.add(message)
        print(f"vqforge: note: {message}", file=sys.stderr)


def _precision_from_flags(bf16: Any, cpu_bf16: Any) -> str:
    # bf16: false meant fp32 everywhere; bf16 + cpu_bf16 meant bf16 wherever native (today's auto).
    # bf16 alone meant bf16 on CUDA only: the nearest setting is auto (which also uses native CPU bf16).
    return "fp32" if bf16 is False else "auto"


@dataclass(frozen=True)
class KeyMap:
    """Old dotted keys of one run-config class and where they now live.

    ``moved``: old key -> new key (value unchanged, or converted by ``convert[old]``). Two groups are read
    together: ``precision_flags`` (the old ``bf16`` / ``cpu_bf16`` pair) and ``ema`` (the old ``enabled`` /
    ``decay`` pair), each -> one new key.
    """

    moved: dict[str, str]
    convert: dict[str, Callable[[Any], Any]]
    precision_flags: tuple[str, str] | None = None  # (bf16 key, cpu_bf16 key)
    precision_key: str = "train.precision"
    ema: tuple[str, str] | None = None  # (enabled key, decay key)
    ema_key: str = "train.ema_decay"

    def upgrade(self, data: dict[str, Any], source: str | Path) -> dict[str, Any]:
        """A copy of plain config ``data`` with every old key moved to its new place (one notice naming
        each old key's new name)."""
        data = _deep_copy(data)
        renamed: list[str] = []
        for old, new in self.moved.items():
            found, value = _pop(data, old)
            if found:
                _put(data, new, self.convert.get(old, _same)(value))
                renamed.append(f"{old} -> {new}")
        if self.precision_flags:
            f1, b1 = _pop(data, self.precision_flags[0])
            f2, b2 = _pop(data, self.precision_flags[1])
            if f1 or f2:
                value = _precision_from_flags(b1 if f1 else True, b2 if f2 else False)
                _put(data, self.precision_key, value)
                renamed.append(f"{'/'.join(self.precision_flags)} -> {self.precision_key}={value}")
        if self.ema:
            f1, enabled = _pop(data, self.ema[0])
            f2, decay = _pop(data, self.ema[1])
            if f1 or f2:
                value = float(decay if f2 else 0.999) if (enabled if f1 else True) else 0.0
                _put(data, self.ema_key, value)
                renamed.append(f"{'/'.join(self.ema)} -> {self.ema_key}={value}")
        for key in [k for k, v in data.items() if v == {}]:  # sections emptied by the moves
            del data[key]
        if renamed:
            notice(f"{source}: older setting names read as their new names: {', '.join(renamed)}")
        return data

    def upgrade_overrides(self, overrides: list[str] | tuple[str, ...], current: Any) -> list[str]:
        """Command-line ``key=value`` overrides with old keys rewritten (``current``: the config so far)."""
        out = []
        for item in overrides:
            key, sep, text = item.partition("=")
            key = key.strip()
            if sep and key in self.moved:
                new = self.moved[key]
                notice(f"override `{key}` is now `{new}`")
                if key in self.convert:
                    text = str(self.convert[key](_parse(text)))
                out.append(f"{new}={text}")
            elif sep and self.precision_flags and key in self.precision_flags:
                on = bool(_parse(text))
                value = ("auto" if on else _get(current, self.precision_key)) if key == self.precision_flags[1] \
                    else ("fp32" if not on else "auto")
                notice(f"override `{key}` is now `{self.precision_key}`; read as {value}")
                out.append(f"{self.precision_key}={value}")
            elif sep and self.ema and key in self.ema:
                if key == self.ema[0]:
                    now = _get(current, self.ema_key)
                    value = (now if now > 0 else 0.999) if _parse(text) else 0.0
                else:
                    value = float(_parse(text))
                notice(f"override `{key}` is now `{self.ema_key}` (0 = off); read as {value}")
                out.append(f"{self.ema_key}={value}")
            else:
                out.append(item)
        return out


def load_run_config(cls: type[T], path: str | Path, keymap: KeyMap, overrides: list[str] | tuple[str, ...] = ()
                    ) -> T:
    """A run config from a YAML file (old key names read with a notice) plus dotted ``key=value`` overrides."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections, got {type(data).__name__}")
    cfg = config_from_data(cls, data or {}, keymap, path)
    return override(cfg, overrides, keymap)


def config_from_data(cls: type[T], data: dict[str, Any], keymap: KeyMap, source: str | Path) -> T:
    """Build ``cls`` from plain data (a YAML file's or a checkpoint's), old key names included."""
    try:
        return from_dict(cls, keymap.upgrade(data, source))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def override(cfg: T, overrides: list[str] | tuple[str, ...], keymap: KeyMap) -> T:
    """``cfg`` with dotted overrides applied (old key names read with a notice)."""
    return apply_overrides(cfg, keymap.upgrade_overrides(list(overrides), cfg)) if overrides else cfg


# -------------------------------------------------------------------------------------------- helpers
def _same(v: Any) -> Any:
    return v


def _parse(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _deep_copy(d: Any) -> Any:
    return {k: _deep_copy(v) for k, v in d.items()} if isinstance(d, dict) else d


def _pop(data: dict, dotted: str) -> tuple[bool, Any]:
    *path, last = dotted.split(".")
    node = data
    for p in path:
        node = node.get(p) if isinstance(node, dict) else None
    if isinstance(node, dict) and last in node:
        return True, node.pop(last)
    return False, None


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
