"""The conditioning modes by name.

Adding a mode: write its file (a :class:`~.base.Condition` subclass and its config, a
:class:`~.base.ConditionConfig` subclass with ``mode: ClassVar[str] = "name"``), then add the class to the
tuple in :data:`MODES` below. Nothing else names it: the mode's config is registered with it, so that
``cond: {mode: name}`` reads as that config (see :class:`~.base.ConditionConfig`).
"""

from __future__ import annotations

from typing import Any

from ...config import ConfigError, from_dict
from .base import Condition, ConditionConfig
from .classes import ClassCondition
from .coord import Coord
from .depth import Depth
from .edges import Edges
from .lowres import Lowres
from .segmentation import Segmentation
from .spatial import StageCondition
from .tokens import Tokens
from .unconditional import Unconditional

#: mode name -> mode class (its ``Config`` is the mode's config)
MODES: dict[str, type[Condition]] = {}


def add_mode(mode: type[Condition]) -> type[Condition]:
    """Register the mode class ``mode`` under its name, and its config as the config of that name."""
    MODES[mode.name] = mode
    ConditionConfig.variants.add(mode.Config)
    return mode


for _mode in (Unconditional, ClassCondition, Segmentation, Depth, Edges, Lowres, Coord, Tokens):
    add_mode(_mode)


def make_condition(config: ConditionConfig, trained_hw: tuple[int, int] = (256, 256), vocab_size: int = 0
                   ) -> Condition:
    """The mode object of ``config`` (see :class:`~.base.Condition` for the arguments)."""
    return MODES[config.mode](config, trained_hw, vocab_size)


def stage_modes() -> list[str]:
    """The modes whose condition stage ``vqforge train condition`` trains (those declaring ``stage_training``)."""
    return sorted(name for name, mode in MODES.items() if mode.stage_training is not None)


def encoded_stage_modes() -> list[str]:
    """The modes whose condition goes through a condition-stage VQGAN (``vqforge encode --cond``)."""
    return [name for name, mode in MODES.items() if issubclass(mode, StageCondition)]


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
