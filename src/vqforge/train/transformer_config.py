"""The config of a transformer run (``vqforge train transformer``): the model pipeline (``model``) and the
training settings (``train``), and reading it from YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..models.transformer import TransformerConfig
from .settings import OldValues, TrainSettings, read_run_config, renamed_names


@dataclass(frozen=True)
class TransformerSettings(TrainSettings):
    """The ``train:`` section of a transformer run: :class:`~vqforge.train.settings.TrainSettings` plus

    warmup_steps / min_lr_ratio: linear warmup then cosine decay to ``min_lr_ratio`` x lr at ``max_steps``.
    weight_decay: AdamW's, on Linear weights only. coord_full_size: coordinate conditioning on crops of
    large images: each image is resized (smallest side) to this size, ``image_size`` crops are taken, and
    the coordinate map of the whole resized image is cropped with it (0 = the crop is the whole image, as
    FacesHQ). val_batches: validation batches per evaluation. n_samples / sample_top_k: the preview's
    sample count and top-k. activation_checkpointing: recompute each block's activations in the backward
    pass (less memory). ``grad_clip`` defaults to 0 (the original does not clip). ``init_from``: a transformer
    model (a bundled model's name, model directory, run directory or checkpoint) whose GPT weights start a new
    run instead of random ones (fine-tuning, e.g. on tokens of a fine-tuned first stage; its GPT must have this
    run's shape). The stages still come from ``--first-stage`` / ``--cond-stage``; a resumed run ignores it.
    """

    batch_size: int = 8
    betas: tuple[float, float] = (0.9, 0.95)
    preview_every: int = 2000
    val_batches: int = 50
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    coord_full_size: int = 0
    n_samples: int = 8
    sample_top_k: int = 100
    activation_checkpointing: bool = False
    init_from: str = ""


@dataclass(frozen=True)
class TransformerRunConfig:
    """A transformer run: the model pipeline and its training settings."""

    #: the names transformer configs used before the one settings vocabulary (read with a notice)
    renamed_keys: ClassVar[dict[str, str | None]] = {"train.accumulate": "train.accumulation",
                                                     "train.sample_every": "train.preview_every"}

    model: TransformerConfig = field(default_factory=TransformerConfig)
    train: TransformerSettings = field(default_factory=TransformerSettings)


#: older transformer keys whose values changed meaning
OLD = OldValues(precision_flags=("train.bf16", "train.cpu_bf16"))


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TransformerRunConfig:
    """A run config from a YAML file (sections ``model`` and ``train``; older key names read with a notice)
    plus ``key=value`` overrides."""
    return read_run_config(TransformerRunConfig, path, OLD, overrides)


#: the names before the one vocabulary: one release more, with a DeprecationWarning
__getattr__ = renamed_names(__name__, globals(), {"TransformerTrainConfig": "TransformerSettings",
                                                  "load_run_config": "load_config"})
