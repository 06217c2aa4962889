"""What a trainer's stage is to the loop: the :class:`Stage` interface, the :class:`Context` the loop hands
to it, one step's :class:`StepOutput`, a call's :class:`RunOptions` and :class:`RunResult`.

A stage builds its models, data and optimisers, computes one step's losses and gradients (never stepping an
optimiser), validates a model and draws a preview; :func:`vqforge.train.loop.run` does everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from .checkpoint import Checkpoint, RunDir
from .console import Console
from .distributed import DistInfo
from .numerics import autocast
from .settings import TrainSettings


@dataclass(frozen=True)
class RunOptions:
    """How one call of a trainer runs (not part of the run's config).

    max_steps: overrides ``train.max_steps``. stop_after: end this call after that many steps in total, as
    an interruption would (a resumable checkpoint is saved). time_limit: seconds of training, then stop
    with a checkpoint. quiet: no progress bar and no per-validation lines. json: the final summary as one
    JSON object.
    """

    max_steps: int | None = None
    stop_after: int | None = None
    time_limit: float | None = None
    quiet: bool = False
    json: bool = False


class StepOutput(NamedTuple):
    """One step's losses (checked for finiteness; the first is shown on the bar) and scalars to log."""

    losses: dict[str, torch.Tensor]
    logs: dict[str, Any]


@dataclass
class Context:
    """What the loop hands to a stage: where it runs, with what settings and precision."""

    run: RunDir
    dist: DistInfo
    settings: TrainSettings
    dtype: torch.dtype
    lr: float
    console: Console
    ddp_model: nn.Module | None = None
    next_batch: Callable[[], dict[str, Any]] = lambda: {}

    @property
    def device(self) -> torch.device:
        return self.dist.device

    def autocast(self):
        """bf16 autocast when the run's precision is bf16 (a no-op for fp32)."""
        return autocast(self.device, self.dtype)


class Stage:
    """A trainer's own part (override the methods; set the attributes in :meth:`build`)."""

    trainer: str = ""  # the checkpoint's ``trainer``: vqgan / transformer / condition
    kind: str = ""  # the model kind that vqforge.load builds
    title: str = ""  # "train vqgan"
    preview_name: str = "step"  # images/<preview_name>_NNNNNNN.png
    best_metric: tuple[str, str] | None = None  # (validation key, "min" | "max"), for best.pt and warnings
    shown: tuple[str, ...] = ()  # validation keys printed on the console (all when empty)

    model: nn.Module  # what is saved as the checkpoint's model (and averaged by EMA)
    train_data: torch.utils.data.Dataset
    optimizers: dict[str, tuple[torch.optim.Optimizer, list[torch.Tensor]]]
    buffer_modules: list[nn.Module] = []  # modules whose buffers a skipped step must not change

    def build(self, ctx: Context, ckpt: Checkpoint | None) -> None:
        raise NotImplementedError

    def finalize_config(self, cfg: Any) -> Any:
        """The run config as built (e.g. with what the data revealed); what config.yaml and checkpoints hold."""
        return cfg

    def load_extra(self, ckpt: Checkpoint) -> None:
        """Restore what :meth:`checkpoint_extra` saved."""

    def checkpoint_extra(self) -> dict[str, Any]:
        return {}

    def train_step(self, ctx: Context, step: int) -> StepOutput:
        raise NotImplementedError

    def after_update(self, ctx: Context) -> None:
        """Called after the optimisers stepped (e.g. to keep ranks' buffers equal)."""

    def validate(self, ctx: Context, model: nn.Module) -> dict[str, float]:
        """Validation metrics of ``model`` (the trained weights or their EMA), in fp32: the numbers are those of
        the model that ``vqforge.load`` returns."""
        return {}

    def preview(self, ctx: Context, step: int, path: Path) -> None:
        """Write an image grid to ``path`` (rank 0 only)."""

    def next_steps(self, run: Path) -> list[str]:
        return []

    def state_modules(self) -> list[nn.Module]:
        """Modules whose weights DDP ranks must agree on (for the debug hash)."""
        return [self.model]


class RunResult(NamedTuple):
    """How a call of a trainer ended."""

    step: int
    stopped_by: str  # "" when max_steps was reached, else "SIGINT", "SIGTERM", "time limit", "stop_after"
    run_dir: Path
    last_val: dict[str, float]
    best_step: int | None = None
    skipped_steps: int = 0
    skipped_images: int = 0

    def record(self) -> dict[str, Any]:
        """The run's outcome as plain data (``--json``)."""
        return {"step": self.step, "stopped_by": self.stopped_by, "run_dir": str(self.run_dir),
                **{k: round(v, 6) for k, v in self.last_val.items()}, "best_step": self.best_step,
                "skipped_steps": self.skipped_steps, "skipped_images": self.skipped_images}
