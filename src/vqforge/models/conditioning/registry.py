"""The conditioning modes by name, and how a config record becomes a mode's config.

Adding a mode: write its file (a :class:`~.base.Condition` subclass and its config, a
:class:`~.base.ConditionConfig` subclass whose ``mode`` field is a one-value Literal), then add the class to
:data:`MODES` below. Nothing else names it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ...config import ConfigError
from .base import Condition, ConditionConfig, notice
from .classes import ClassCondition
from .coord import Coord
from .depth import Depth
from .edges import Edges
from .lowres import Lowres
from .segmentation import Segmentation
from .tokens import Tokens
from .unconditional import Unconditional

#: mode name -> mode class (its ``Config`` is the mode's config)
MODES: dict[str, type[Condition]] = {m.name: m for m in (
    Unconditional, ClassCondition, Segmentation, Depth, Edges, Lowres, Coord, Tokens,
)}

#: the flat record every mode shared before modes were objects: key -> its default then
FLAT_DEFAULTS: dict[str, Any] = {
    "sos_token": 0, "n_classes": 0, "null_class": True, "class_dropout": 0.0, "cond_stage": None, "n_labels": 0,
    "downsample_cond_size": -1, "lowres_factor": 4, "coord_n_embed": 1024, "coord_down_factor": 16,
    "canny_sigma": 1.0, "canny_low": 0.1, "canny_high": 0.2,
}


def make_condition(config: ConditionConfig, trained_hw: tuple[int, int] = (256, 256), vocab_size: int = 0
                   ) -> Condition:
    """The mode object of ``config`` (see :class:`~.base.Condition` for the arguments)."""
    return MODES[config.mode](config, trained_hw, vocab_size)


def member_config(data: dict[str, Any], where: str) -> tuple[type, dict[str, Any]]:
    """The mode's config class for a record and the record in its keys (see :meth:`ConditionConfig.config_variant`).

    Keys of an old flat record that do not apply to the mode are dropped (with a notice when they were set to
    something else than their default then, since they are ignored); renamed keys get their new name, with a notice.
    """
    prefix = f"{where}." if where else ""
    mode = data.get("mode", "unconditional")
    if not isinstance(mode, str) or mode not in MODES:
        raise ConfigError(f"{prefix}mode: {mode!r} is not one of {list(MODES)}")
    cls = MODES[mode].Config
    own = {f.name for f in dataclasses.fields(cls)}
    renamed = getattr(cls, "renamed_keys", {})
    others = set(FLAT_DEFAULTS) | {f.name for m in MODES.values() for f in dataclasses.fields(m.Config)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        new = renamed.get(key)
        if key in own:
            out[key] = value
        elif new in own and new not in data:
            notice(f"{prefix}{key} is now {prefix}{new}")
            out[new] = value
        elif key in others:
            if key in FLAT_DEFAULTS and value == FLAT_DEFAULTS[key]:
                continue  # a flat record's unused setting
            notice(f"{prefix}{key}={value!r} ignored: it is not a setting of the {mode} mode")
        else:
            out[key] = value  # unknown: from_dict names it
    return cls, out


def default_stage_mode(in_channels: int) -> str:
    """The mode a condition-stage VQGAN of ``in_channels`` suggests (depth for 1, lowres for 3, else segmentation)."""
    for name, mode in MODES.items():
        takes = getattr(mode, "takes_stage", None)
        if takes is not None and takes(in_channels):
            return name
    raise ValueError(f"no conditioning mode takes a condition stage of {in_channels} channels")


def stage_condition(stage, mode: str | None = None, trained_hw: tuple[int, int] = (256, 256), **settings: Any
                    ) -> Condition:
    """The conditioning mode of a condition-stage model ``stage`` (a VQGAN), holding it.

    ``mode``: its name (default: the one the stage's input channels suggest, see :func:`default_stage_mode`);
    ``settings``: the mode's other config keys (e.g. ``n_labels``, ``lowres_factor``). ValueError when the mode
    takes no such stage or the settings do not fit it.
    """
    from ...config import from_dict

    name = mode or default_stage_mode(stage.config.ddconfig.in_channels)
    try:
        cfg = from_dict(ConditionConfig, {"mode": name, **settings}, where="cond")
    except ConfigError as e:
        raise ValueError(str(e)) from None
    condition = make_condition(make_condition(cfg).with_stage(stage.config), trained_hw)
    problems = condition.problems()
    if problems:
        raise ValueError("; ".join(problems))
    condition.stage = stage
    return condition
