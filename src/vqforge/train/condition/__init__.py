"""Condition stages (``vqforge train condition``): VQGANs over segmentation, depth or edge maps.

:mod:`.base` holds the map-kind interface and registry, one file per kind (:mod:`.segmentation`,
:mod:`.depth`, :mod:`.edges`), :mod:`.stage` the trainer's part of the loop.
"""

from . import depth, edges, segmentation  # noqa: F401 - registers the kinds
from .base import KINDS, MapKind, map_kind, register
from .segmentation import SegmentationMaps
from .stage import ConditionRunConfig, ConditionSettings, ConditionStage, load_config, train_condition

__all__ = ["KINDS", "MapKind", "map_kind", "register", "SegmentationMaps", "ConditionRunConfig",
           "ConditionSettings", "ConditionStage", "load_config", "train_condition"]
