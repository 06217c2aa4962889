"""The segmentation condition stage under its former module name (now :mod:`vqforge.train.condition`)."""

from __future__ import annotations

from .condition import ConditionRunConfig, SegmentationMaps, load_config, train_condition

SegmentationRunConfig = ConditionRunConfig
load_segmentation_config = load_config
train_segmentation = train_condition

__all__ = ["SegmentationMaps", "SegmentationRunConfig", "load_segmentation_config", "train_segmentation"]
