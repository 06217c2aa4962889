"""The config of a VQGAN run (``vqforge train vqgan``): the model, the loss, the training settings (``train``) and
the Gumbel temperature schedule, and reading it from YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..losses.vqgan_loss import VQGANLossConfig
from ..models.vqgan import VQGANConfig
from .settings import OldValues, TrainSettings, read_run_config

#: the parts of a VQGAN that ``train.freeze`` may name
PARTS = ("encoder", "quant_conv", "quantize", "post_quant_conv", "decoder")


# ============================================================================================ config
@dataclass(frozen=True)
class VQGANSettings(TrainSettings):
    """The ``train:`` section of a VQGAN run: :class:`~vqforge.train.settings.TrainSettings` plus

    ``data`` may also be ``fashion-mnist`` (Debian's ``dataset-fashion-mnist``: its train split trains, the
    first ``max_val_images`` of its test split validate). ``max_val_images``: cap on validation images.
    ``usage_window``: steps over which codebook usage is measured. ``channels_last``: NHWC convolutions on
    CUDA. Adam's betas default to the original's (0.5, 0.9). ``init_from``: a VQGAN (a bundled model's name,
    model directory, run directory or checkpoint; a transformer pipeline gives its first stage) whose weights
    start a new run instead of random ones (fine-tuning; its architecture must equal ``model``'s). A resumed
    run ignores it. ``freeze``: parts of the model kept as they are (any of :data:`PARTS`); frozen parts are
    left out of the optimiser and always run in eval mode (a frozen ``quantize`` neither restarts codes nor
    updates them). Freezing ``encoder``, ``quant_conv`` and ``quantize`` fine-tunes only the decoder and keeps
    every image's codes, so token datasets and transformers trained on the first stage stay valid.
    """

    batch_size: int = 12
    workers: int = 4
    seed: int = 23
    max_val_images: int = 256
    usage_window: int = 100
    channels_last: bool = True
    init_from: str = ""
    freeze: tuple[str, ...] = ()


@dataclass(frozen=True)
class GumbelTemperatureConfig:
    """Temperature schedule for ``quantizer.kind: gumbel`` (the original's LambdaWarmUpCosineScheduler).

    Linear from ``start`` to ``max`` over ``warm_up_steps``, then cosine from ``max`` down to ``min`` until
    ``max_decay_steps``. Disabled: the quantizer keeps ``temp_init``.
    """

    enabled: bool = False
    warm_up_steps: int = 0
    max_decay_steps: int = 1_000_001
    start: float = 0.9
    max: float = 0.9
    min: float = 1e-6


@dataclass(frozen=True)
class VQGANRunConfig:
    """Everything a VQGAN training run needs (the YAML files in ``configs/vqgan_*.yaml``)."""

    #: the names VQGAN configs used before the one settings vocabulary (read with a notice)
    renamed_keys: ClassVar[dict[str, str | None]] = {
        "data.train": "train.data", "data.val": "train.val_data", "data.val_fraction": "train.val_fraction",
        "data.size": "train.image_size", "data.resize": "train.resize", "data.resize_max": "train.resize_max",
        "data.crop": "train.crop", "data.flip": "train.flip", "data.batch_size": "train.batch_size",
        "data.workers": "train.workers", "data.max_val_images": "train.max_val_images",
        "optim.lr": "train.learning_rate", "optim.base_lr": "train.base_learning_rate",
        "optim.scale_lr": "train.scale_lr", "optim.betas": "train.betas", "optim.accumulation": "train.accumulation",
        "schedule.max_steps": "train.max_steps", "schedule.log_every": "train.log_every",
        "schedule.image_every": "train.preview_every", "schedule.ckpt_every": "train.checkpoint_every",
        "schedule.keep_every": "train.keep_every", "schedule.val_every": "train.val_every",
        "schedule.usage_window": "train.usage_window", "seed": "train.seed", "device": "train.device",
        "channels_last": "train.channels_last"}

    model: VQGANConfig = field(default_factory=VQGANConfig)
    loss: VQGANLossConfig = field(default_factory=VQGANLossConfig)
    train: VQGANSettings = field(default_factory=VQGANSettings)
    gumbel: GumbelTemperatureConfig = field(default_factory=GumbelTemperatureConfig)


#: older VQGAN keys whose values changed meaning (``optim.lr: null`` meant "derive", now 0)
OLD = OldValues(precision_flags=("bf16", "cpu_bf16"), ema=("ema.enabled", "ema.decay"), null_is_zero=("optim.lr",))


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> VQGANRunConfig:
    """A VQGAN run config from YAML (older key names read with a notice) plus dotted overrides."""
    return read_run_config(VQGANRunConfig, path, OLD, overrides)
