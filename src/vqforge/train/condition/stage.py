"""Training a condition stage (``vqforge train condition``): a VQGAN over a conditioning mode's model inputs
(segmentation, depth or edge maps: every mode that declares
:class:`~vqforge.models.conditioning.StageTraining`; the mode is the only registry).

Like the original's ``VQSegmentationModel``: a reconstruction loss (binary cross-entropy on logits for modes
that declare ``logits``: segmentation and edges; else L1: depth) plus the codebook loss, no perceptual or GAN
term, Adam with betas (0.5, 0.9). The result is an ordinary ``vqgan`` model: ``vqforge.load(RUN_DIR)`` returns
the VQGAN, usable as ``--cond-stage`` for ``vqforge encode`` / ``vqforge train transformer`` with that
conditioning. Logged: ``train/loss``, ``train/rec``, ``train/quant``, ``val/loss`` (best.pt follows it) and the
mode's metrics (``stage_metrics``: ``val/pixel_accuracy``, ``val/l1`` + ``val/psnr``, ``val/edge_f1``);
previews are input | reconstruction grids.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ... import imageio
from ...config import ConfigError
from ...data.images import FileDataset, ImageDataset, find_images, split_files
from ...data.maps import ConditionMaps
from ...data.shards import is_shard_spec
from ...io import VQForgeError
from ...models.conditioning import MODES, StageCondition, make_condition, stage_modes
from ...models.vqgan import VQGAN, VQGANConfig
from .. import loop
from ..checkpoint import Checkpoint
from ..numerics import adam
from ..settings import OldValues, TrainSettings, read_run_config


@dataclass(frozen=True)
class ConditionSettings(TrainSettings):
    """The ``train:`` section of a condition-stage run: :class:`~vqforge.train.settings.TrainSettings` plus

    ``codebook_weight``: weight of the codebook loss. ``label_shift`` (segmentation): add this to every
    label id modulo 256 before use (COCO-Stuff maps use 1, so that 255 = unlabeled becomes 0).
    ``init_bias_from_data`` (segmentation, edges): start the decoder's output bias at the log-odds of the
    training maps (a vqforge addition: the BCE then starts at the prior's loss). ``val_fraction`` 0:
    validate on center crops of the training maps (reconstruction quality).
    """

    val_fraction: float = 0.1
    codebook_weight: float = 1.0
    label_shift: int = 0
    init_bias_from_data: bool = True


@dataclass(frozen=True)
class ConditionRunConfig:
    """``mode``: the conditioning mode whose condition stage this is (one of
    :func:`~vqforge.models.conditioning.stage_modes`: segmentation, depth, edges). ``n_labels``: the label count
    of a mode that has one (segmentation). ``model``: the VQGAN (input and output channels: the mode's, i.e.
    ``n_labels`` for segmentation, 1 for depth and edges)."""

    #: the names of the segmentation trainer's configs (read with a notice)
    renamed_keys: ClassVar[dict[str, str | None]] = {"train.size": "train.image_size",
                                                     "train.image_every": "train.preview_every"}

    mode: str = "segmentation"
    n_labels: int = 182
    model: VQGANConfig = field(default_factory=VQGANConfig)
    train: ConditionSettings = field(default_factory=ConditionSettings)

    def __post_init__(self) -> None:
        if self.mode not in stage_modes():
            raise ConfigError.at("mode", f"no condition stage is trained for mode {self.mode!r} "
                                         f"(one of {', '.join(stage_modes())})")


#: no older condition-stage key changed its value's meaning
OLD = OldValues()


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ConditionRunConfig:
    """A condition-stage run config from YAML (older key names read with a notice) plus dotted overrides."""
    return read_run_config(ConditionRunConfig, path, OLD, overrides)


def stage_mode(cfg: ConditionRunConfig) -> StageCondition:
    """The conditioning mode whose condition stage ``cfg`` trains, with its defaults (and the run's ``n_labels``
    where the mode's config has that setting)."""
    config_cls = MODES[cfg.mode].Config
    labels = {"n_labels": cfg.n_labels} if "n_labels" in {f.name for f in dataclasses.fields(config_cls)} else {}
    return make_condition(config_cls(**labels))


def stage_dataset(mode: StageCondition, files: list, s: ConditionSettings, train: bool) -> FileDataset:
    """The training (``train``) or validation items of ``mode``'s condition stage: photos when the mode computes
    its input from images, else its condition files (:class:`~vqforge.data.maps.ConditionMaps`)."""
    if mode.raw_input is None:
        return ImageDataset(files, s.image_size, "random" if train else "center", s.flip and train, source=s.data,
                            resize=s.resize, resize_max=s.resize_max if train else 0)
    shift = s.label_shift if mode.stage_training.label_ids else 0
    return ConditionMaps(mode, files, s.image_size, train, shift, s.resize_max if train else 0, source=s.data)


class ConditionStage(loop.Stage):
    """The condition stage's part of the loop: one VQGAN and its Adam, the loss the mode's
    :class:`~vqforge.models.conditioning.StageTraining` declares."""

    trainer, kind, title = "condition", "vqgan", "train condition"
    best_metric = ("val/loss", "min")

    def __init__(self, cfg: ConditionRunConfig):
        self.cfg, self.mode = cfg, stage_mode(cfg)
        self.training = self.mode.stage_training
        self.preview_name = self.training.preview_name or self.mode.name

    def build(self, ctx: loop.Context, ckpt: Checkpoint | None) -> None:
        cfg, s, dd = self.cfg, self.cfg.train, self.cfg.model.ddconfig
        want = self.mode.expected_channels()
        if dd.in_channels != want or dd.out_ch != want:
            raise VQForgeError(f"{cfg.mode} stage: model.ddconfig.in_channels and out_ch must be {want} "
                               f"(got {dd.in_channels}/{dd.out_ch})")
        if not s.data:
            raise VQForgeError("train condition: no training data (pass --data PATH)")
        if is_shard_spec(s.data):
            self._shards(s)
        else:
            self._files(s)
        self.model = VQGAN(cfg.model).to(ctx.device)
        params = list(self.model.parameters())
        self.optimizers = {"vqgan": (adam(params, ctx.lr, s.betas), params)}  # NOTE: the name old runs saved
        self.buffer_modules = [self.model]
        if ckpt is None and s.init_bias_from_data and self.training.logits:
            self._init_output_bias(ctx)

    def _files(self, s: ConditionSettings) -> None:
        files = find_images(s.data)
        if s.val_data:
            tr, va = files, find_images(s.val_data)
        elif s.val_fraction > 0:
            tr, va = split_files(files, s.val_fraction, seed=s.seed)
        else:  # validate on center crops of the training maps (reconstruction quality)
            tr, va = files, files
        self.train_data = stage_dataset(self.mode, tr, s, True)
        self.val_data = stage_dataset(self.mode, va, s, False)

    def _shards(self, s: ConditionSettings) -> None:
        """Tar shards (``vqforge shard`` of the maps, or of photos with ``--maps``): streamed for training; validated
        on the held-out shards, ``--val-data``, or centre crops of the first training maps."""
        from ...data.shards import DecodeImage, DecodeMap, ShardStream, expand, shard_samples, validation_samples

        shards = expand(s.data)
        if self.mode.raw_input is None:  # computed from photos
            train, center = (DecodeImage(s.image_size, "random", s.flip, s.resize, s.resize_max),
                             DecodeImage(s.image_size, "center", False, s.resize))
        else:
            shift = s.label_shift if self.mode.stage_training.label_ids else 0
            train, center = (DecodeMap(self.mode, s.image_size, True, shift, s.resize_max),
                             DecodeMap(self.mode, s.image_size, False, shift))
        self.train_data = ShardStream(shards, train, seed=s.seed, buffer=s.shuffle_buffer, source=s.data)
        val = shard_samples(expand(s.val_data), center, 256, s.val_data) if s.val_data and is_shard_spec(s.val_data) \
            else validation_samples(shards, center, 256)
        if val is None and s.val_data:
            raise VQForgeError(f"{s.val_data}: validation data of a sharded run are shards too")
        self.val_data = val if val is not None else shard_samples(shards, center, 256, s.data)

    def inputs(self, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        """The model inputs (B, C, H, W) of a batch: the mode's own (what the stage will encode)."""
        return self.mode.batch_input(batch, device)

    def loss(self, rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction loss of the decoder's output ``rec`` (fp32) against the input ``x``."""
        if self.training.logits:
            return F.binary_cross_entropy_with_logits(rec, (x > 0).float())
        return (rec - x).abs().mean()

    def to_rgb(self, maps: torch.Tensor) -> torch.Tensor:
        """Inputs or reconstructions as pictures (B, 3, H, W) in [-1, 1] (the mode's ``displayable``)."""
        rgb = self.mode.displayable(maps).float().clamp(-1, 1)
        return rgb.expand(-1, 3, -1, -1) if rgb.shape[1] == 1 else rgb

    @torch.no_grad()
    def _init_output_bias(self, ctx: loop.Context) -> None:
        """Decoder output bias = smoothed log-odds of each channel's targets over (up to) 256 training maps."""
        sums, pixels = None, 0
        maps = self.val_data if isinstance(self.train_data, torch.utils.data.IterableDataset) else self.train_data
        for i in range(min(len(maps), 256)):
            x = self.inputs(_collate(maps[(i, ctx.settings.seed)]), ctx.device)
            counts = (x > 0).float().sum((0, 2, 3))  # (C,)
            sums = counts if sums is None else sums + counts
            pixels += x.shape[0] * x.shape[2] * x.shape[3]
        p = ((sums + 0.5) / (pixels + 0.5 * sums.numel())).clamp(1e-6, 1 - 1e-6)
        self.model.decoder.conv_out.bias.copy_(torch.log(p / (1 - p)))

    def train_step(self, ctx: loop.Context, step: int) -> loop.StepOutput:
        s = ctx.settings
        total = torch.zeros((), device=ctx.device)
        rec_sum, q_sum = torch.zeros_like(total), torch.zeros_like(total)
        for i in range(s.accumulation):
            x = self.inputs(ctx.next_batch(), ctx.device)  # (B, C, H, W)
            sync = i == s.accumulation - 1 or not ctx.dist.distributed
            with contextlib.nullcontext() if sync else ctx.ddp_model.no_sync():
                with ctx.autocast():
                    out = ctx.ddp_model(x)
                rec = self.loss(out.reconstruction.float(), x)
                q = out.quantizer.losses["loss"].float()
                loss = rec + s.codebook_weight * q
                (loss / s.accumulation).backward()
            total += loss.detach() / s.accumulation
            rec_sum += rec.detach() / s.accumulation
            q_sum += q.detach() / s.accumulation
        return loop.StepOutput({"loss": total}, {"train/loss": total, "train/rec": rec_sum, "train/quant": q_sum})

    @torch.no_grad()
    def validate(self, ctx: loop.Context, model: nn.Module) -> dict[str, float]:
        model.eval()
        sums: dict[str, float] = {}
        n = 0
        bs = ctx.settings.batch_size
        for i in range(0, len(self.val_data), bs):
            batch = _collate([self.val_data[j] for j in range(i, min(len(self.val_data), i + bs))])
            x = self.inputs(batch, ctx.device)
            rec = model(x).reconstruction.float()
            metrics = {"val/loss": self.loss(rec, x).item(), **self.mode.stage_metrics(rec, x)}
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v * x.shape[0]
            n += x.shape[0]
        return {k: v / max(n, 1) for k, v in sums.items()}

    @torch.no_grad()
    def preview(self, ctx: loop.Context, step: int, path: Path) -> None:
        batch = _collate([self.val_data[j] for j in range(min(8, len(self.val_data)))])
        x = self.inputs(batch, ctx.device)
        self.model.eval()
        rec = self.model(x).reconstruction.float()
        imageio.save_grid(path, torch.cat([self.to_rgb(x), self.to_rgb(rec)]), nrow=len(x))

    def next_steps(self, run: Path) -> list[str]:
        return [f"vqforge encode --model FIRST_STAGE --cond-stage {run} --cond {self.cfg.mode} ... --out tokens/",
                f"vqforge train transformer --cond-stage {run} ..."]


def _collate(items: Any) -> dict[str, Any]:
    """A batch from one item or a list of items (tensors stacked)."""
    items = items if isinstance(items, list) else [items]
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}


def train_condition(cfg: ConditionRunConfig | None, out: str | Path, resume: bool = False,
                    overrides: list[str] | tuple[str, ...] = (), settings: dict[str, Any] | None = None,
                    **options: Any) -> loop.RunResult:
    """Train (or, with ``resume``, continue) a condition stage in ``out``.

    ``cfg`` None with ``resume``: the run's own config; ``overrides`` / ``settings`` change it (see
    :func:`vqforge.train.loop.configure`). ``options``: :class:`~vqforge.train.loop.RunOptions` fields
    (``max_steps``, ``stop_after``, ``time_limit``, ``quiet``, ``json``).
    """
    run, ckpt = loop.resume_checkpoint(out, resume, "condition")
    cfg = loop.configure(cfg, ckpt, ConditionRunConfig, OLD, run.last, overrides, settings)
    return loop.run(ConditionStage(cfg), cfg, run, ckpt, loop.RunOptions(**options))
