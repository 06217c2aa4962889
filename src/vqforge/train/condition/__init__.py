"""Condition stages (``vqforge train condition``): VQGANs over a conditioning mode's maps (segmentation, depth,
edges). The modes say how (:class:`~vqforge.models.conditioning.StageTraining`); :mod:`.stage` is the trainer's
part of the loop.
"""

from .stage import (ConditionRunConfig, ConditionSettings, ConditionStage, load_config, stage_dataset, stage_mode,
                    train_condition)

__all__ = ["ConditionRunConfig", "ConditionSettings", "ConditionStage", "load_config", "stage_dataset",
           "stage_mode", "train_condition"]
