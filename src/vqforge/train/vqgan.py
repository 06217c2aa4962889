"""Training a VQGAN first stage (``vqforge train vqgan``): the stage's own part of the one training loop.

The loop (:mod:`vqforge.train.loop`) owns everything a trainer shares; this module supplies the config,
the datasets, the models and optimisers, one step, validation and the preview grid. A run directory holds
``config.yaml`` (:class:`VQGANRunConfig`), ``checkpoints/`` (``last.pt``, ``best.pt`` by validation L1),
``metrics.jsonl``, ``tb/`` and ``images/step_NNNNNNN.png`` (inputs over reconstructions);
``vqforge.load(RUN_DIR)`` returns the trained :class:`~vqforge.models.vqgan.VQGAN` (EMA weights if enabled).

Per optimisation step (``train.accumulation`` micro-batches):

1. :func:`generator_step` on each micro-batch: autoencoder forward, ``VQGANLoss.generator_loss``
   (reconstruction + perceptual + codebook + adaptive-weight GAN term), backward.
2. :func:`discriminator_step` on each micro-batch, with the DETACHED reconstruction kept from step 1.
   NOTE: the original recomputes the autoencoder forward for the discriminator (after the autoencoder's
   update); vqforge reuses the reconstruction, which saves a full autoencoder forward per step and differs
   only by that one update.
3. The loop checks every loss and gradient and steps the autoencoder's and the discriminator's Adam.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from ..config import ConfigError, to_dict
from ..data.images import ImageDataset, find_images, split_files
from ..data.shards import is_shard_spec
from ..imageio import save_grid
from ..io import VQForgeError
from ..losses.vqgan_loss import VQGANLoss
from ..metrics import psnr, ssim
from ..models.vqgan import VQGAN
from ..quantizers import perplexity
from ..quantizers.usage import CodebookUsage
from . import distributed as D
from . import loop
from .checkpoint import Checkpoint
from .numerics import adam
from .settings import config_from_data, renamed_names
from .vqgan_config import (OLD, PARTS, GumbelTemperatureConfig, VQGANRunConfig, VQGANSettings,  # noqa: F401
                           load_config)

KIND = "vqgan"


def train_step_bytes(cfg: VQGANRunConfig, image_size: int | None = None) -> int:
    """Estimated peak memory of one training step at crops of ``image_size`` (default the config's): the model's
    step (:func:`vqforge.models.footprint.vqgan_train_bytes`) and the photos being resized for the crops."""
    from ..models.footprint import vqgan_train_bytes

    t = cfg.train
    side = image_size or t.image_size
    r = max(side, t.resize if image_size is None else 0, t.resize_max if image_size is None else 0)
    return vqgan_train_bytes(cfg.model, (side, side), t.batch_size) + 2 * t.batch_size * r * r * 3 * (1 + 4)


def check_memory(cfg: VQGANRunConfig, budget=None) -> None:
    """Refuse (one line: :class:`vqforge.memory.OverBudget`) a run whose training step would not fit the memory
    budget (default: a share of what is available), naming the largest ``train.image_size`` that fits."""
    from ..devices import resolve_device
    from ..memory import Budget, largest_fitting, refusal

    try:
        device = resolve_device(cfg.train.device)
    except Exception:  # noqa: BLE001 - the device's own error comes later, from the trainer, in its words
        device = None
    budget = budget or Budget.default(device if device is not None and device.type == "cuda" else None)
    need = train_step_bytes(cfg)
    if need <= budget.bytes:
        return
    f = cfg.model.ddconfig.downsample_factor
    side = largest_fitting(lambda s: train_step_bytes(cfg, s * f), budget.bytes, 1, max(1, cfg.train.image_size // f))
    raise refusal(f"train.image_size={cfg.train.image_size} (train.batch_size={cfg.train.batch_size})", need, budget,
                  None if side is None else f"train.image_size={side * f}", "activations kept for the backward pass")


def gumbel_temperature(cfg: GumbelTemperatureConfig, step: int) -> float:
    """The gumbel temperature at ``step`` (warm-up then cosine decay)."""
    if step < cfg.warm_up_steps:
        return (cfg.max - cfg.start) / max(cfg.warm_up_steps, 1) * step + cfg.start
    t = min((step - cfg.warm_up_steps) / max(cfg.max_decay_steps - cfg.warm_up_steps, 1), 1.0)
    return cfg.min + 0.5 * (cfg.max - cfg.min) * (1 + math.cos(t * math.pi))


# ============================================================================================ steps
class GeneratorResult(NamedTuple):
    """What :func:`generator_step` hands on: the detached reconstruction, the code ids and the loss logs."""

    reconstruction: torch.Tensor  # (B, C, H, W), detached
    indices: torch.Tensor  # (B, h, w)
    logs: dict[str, torch.Tensor]


def generator_step(model: nn.Module, loss: VQGANLoss, x: torch.Tensor, step: int, scale: float = 1.0,
                   autocast: Callable[[], Any] = contextlib.nullcontext) -> GeneratorResult:
    """Autoencoder forward + ``generator_loss`` + backward of ``scale * total`` for one (micro-)batch.

    ``model`` may be DDP-wrapped. The discriminator's parameters are frozen during this step (gradients
    flow through it to the reconstruction only). ``autocast``: the precision context (bf16 or none); the
    reconstruction is cast to fp32 before the loss. Does not step the optimiser.
    """
    core: VQGAN = D.unwrap(model)  # type: ignore[assignment]
    loss.discriminator.requires_grad_(False)
    try:
        with autocast():
            out = model(x)
            xrec = out.reconstruction.float()  # (B, C, H, W)
            total, logs = loss.generator_loss(x, xrec, out.quantizer.losses["loss"].float(), core.last_layer, step)
        (total.float() * scale).backward()
    finally:
        loss.discriminator.requires_grad_(True)
    return GeneratorResult(xrec.detach(), out.quantizer.indices.detach(), logs)


def discriminator_step(loss: VQGANLoss, x: torch.Tensor, xrec_detached: torch.Tensor, step: int,
                       scale: float = 1.0, autocast: Callable[[], Any] = contextlib.nullcontext
                       ) -> dict[str, torch.Tensor]:
    """``discriminator_loss`` on real ``x`` and the detached reconstruction + backward of ``scale * loss``.

    Does not step the optimiser. NOTE: the original recomputes the reconstruction here; see the module doc.
    """
    with autocast():
        d_loss, logs = loss.discriminator_loss(x, xrec_detached.detach(), step)
    (d_loss.float() * scale).backward()
    return logs


def init_weights(model: VQGAN, source: str) -> None:
    """Copy the weights of the VQGAN at ``source`` (see ``VQGANSettings.init_from``) into ``model``; a different
    architecture is one error naming ``source``."""
    from ..api import load_vqgan

    src = load_vqgan(source, "train vqgan (train.init_from)")
    try:
        model.load_state_dict(src.state_dict())
    except RuntimeError:
        raise VQForgeError(f"{source}: train.init_from has another architecture than this run's model: "
                           f"section") from None


def freeze_parts(model: VQGAN, parts: tuple[str, ...]) -> None:
    """Keep ``parts`` of ``model`` fixed (see ``VQGANSettings.freeze``): no gradients, always eval mode."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ConfigError(f"train.freeze: unknown part(s) {unknown}; choose from {list(PARTS)}")
    for name in parts:
        part = getattr(model, name)
        part.requires_grad_(False)
        part.register_forward_pre_hook(_stay_in_eval)


def _stay_in_eval(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook of a frozen part: whatever the loop's ``model.train()`` set, run in eval mode."""
    module.train(False)


# ============================================================================================ data
def build_datasets(cfg: VQGANRunConfig) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    """Training and validation datasets from ``cfg.train`` (a held-out split when ``val_data`` is empty)."""
    s = cfg.train
    if not s.data:
        raise VQForgeError("train vqgan: no training data (pass --data PATH)")
    if s.data.split(":", 1)[0] == "fashion-mnist":
        from ..data.fashion_mnist import FashionMNIST

        if s.data not in ("fashion-mnist", "fashion-mnist:train") or s.val_data:
            raise VQForgeError(f"{s.data}: Fashion-MNIST trains on its train split and validates on its test "
                               f"split (use --data fashion-mnist, without --val-data)")
        ch = cfg.model.ddconfig.in_channels
        return (FashionMNIST("train", s.image_size, ch),
                FashionMNIST("test", s.image_size, ch, limit=s.max_val_images))
    channels = cfg.model.ddconfig.in_channels
    if is_shard_spec(s.data):
        return _shard_datasets(s, channels)
    files = find_images(s.data)
    if s.val_data:
        train_files, val_files, val_source = files, find_images(s.val_data), s.val_data
    else:
        train_files, val_files = split_files(files, s.val_fraction, seed=s.seed)
        val_source = f"{s.data} (held-out split)"
    train = ImageDataset(train_files, size=s.image_size, crop=s.crop, flip=s.flip, source=s.data, resize=s.resize,
                         resize_max=s.resize_max, channels=channels)
    val = ImageDataset(val_files[: s.max_val_images], size=s.image_size, crop="center", flip=False,
                       source=val_source, resize=s.resize, channels=channels)
    return train, val


def _shard_datasets(s: VQGANSettings, channels: int) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    """Tar shards (``--data 'DIR/shard-{000000..000099}.tar'``): a stream for training; validation from
    ``--val-data`` (images or shards) or the held-out shards ``vqforge shard --val-fraction`` wrote."""
    from ..data.shards import DecodeImage, ShardStream, expand, shard_samples, validation_samples

    shards = expand(s.data)
    train = ShardStream(shards, DecodeImage(s.image_size, s.crop, s.flip, s.resize, s.resize_max, channels),
                        seed=s.seed, buffer=s.shuffle_buffer, source=s.data)
    center = DecodeImage(s.image_size, "center", False, s.resize, 0, channels)
    if s.val_data and is_shard_spec(s.val_data):
        val = shard_samples(expand(s.val_data), center, s.max_val_images, s.val_data)
    elif s.val_data:
        val = ImageDataset(find_images(s.val_data)[: s.max_val_images], size=s.image_size, crop="center", flip=False,
                           source=s.val_data, resize=s.resize, channels=channels)
    else:
        val = validation_samples(shards, center, s.max_val_images)
        if val is None:
            raise VQForgeError(f"{s.data}: no validation data: pass --val-data, or shard with --val-fraction")
    return train, val


@torch.no_grad()
def validate(model: VQGAN, val: torch.utils.data.Dataset, batch_size: int, device: torch.device,
             workers: int = 0) -> dict[str, float]:
    """Mean L1, PSNR, SSIM and code perplexity of ``model`` on ``val`` (center crops, fp32)."""
    from .stream import ResumableSampler

    sampler = ResumableSampler(len(val), shuffle=False, drop_last=False, with_seeds=True)
    loader = torch.utils.data.DataLoader(val, batch_size=batch_size, sampler=sampler, num_workers=min(workers, 2))
    was_training = model.training
    model.eval()
    l1, ps, ss, n = 0.0, 0.0, 0.0, 0
    usage = CodebookUsage(model.n_codes)
    for batch in loader:
        x = batch["image"].to(device)
        out = model(x)
        xrec = out.reconstruction.float().clamp(-1, 1)
        l1 += (xrec - x).abs().flatten(1).mean(1).sum().item()
        ps += psnr(xrec, x).sum().item()
        ss += ssim(xrec, x).sum().item()
        n += x.shape[0]
        usage.update(out.quantizer.indices, sync=False)
    model.train(was_training)
    return {"val/l1": l1 / n, "val/psnr": ps / n, "val/ssim": ss / n,
            "val/perplexity": usage.perplexity(), "val/codebook_usage": usage.usage()}


# ============================================================================================ the stage
class VQGANStage(loop.Stage):
    """The VQGAN's part of the loop: autoencoder + discriminator, their two Adam optimisers."""

    trainer, kind, title, preview_name = "vqgan", KIND, "train vqgan", "step"
    best_metric = ("val/l1", "min")
    shown = ("val/l1", "val/psnr", "val/ssim", "val/codebook_usage")

    def __init__(self, cfg: VQGANRunConfig):
        self.cfg = cfg

    def build(self, ctx: loop.Context, ckpt: Checkpoint | None) -> None:
        cfg, dev, s = self.cfg, ctx.device, self.cfg.train
        if cfg.loss.disc_in_channels != cfg.model.ddconfig.out_ch or cfg.loss.disc_conditional:
            raise ConfigError("train vqgan: loss.disc_in_channels must equal model.ddconfig.out_ch "
                              "(conditional discriminators are not supported by this trainer)")
        self.train_data, self.val_data = build_datasets(cfg)
        self.model = VQGAN(cfg.model)
        if s.init_from and ckpt is None:
            init_weights(self.model, s.init_from)
        self.model = self.model.to(dev)
        freeze_parts(self.model, s.freeze)
        self.loss = VQGANLoss(cfg.loss).to(dev)
        self.channels_last = dev.type == "cuda" and s.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.loss = self.loss.to(memory_format=torch.channels_last)
        # The discriminator is not DDP-wrapped (it runs several times per step); rank 0's init is broadcast
        # and its gradients are averaged explicitly.
        D.broadcast_module(self.loss.discriminator, ctx.dist)
        ae = [p for p in self.model.parameters() if p.requires_grad]
        disc = list(self.loss.discriminator.parameters())
        self.optimizers = {"ae": (adam(ae, ctx.lr, s.betas), ae), "disc": (adam(disc, ctx.lr, s.betas), disc)}
        self.buffer_modules = [self.model, self.loss.discriminator]
        self.usage = CodebookUsage(self.model.n_codes, window=max(s.usage_window, 1))
        self.gumbel = cfg.gumbel.enabled and self.model.quantize.temperature is not None  # a quantizer with one
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None

    def load_extra(self, ckpt: Checkpoint) -> None:
        self.loss.discriminator.load_state_dict(ckpt.extra["discriminator"])

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"discriminator": {k: v.detach().cpu() for k, v in self.loss.discriminator.state_dict().items()},
                "loss_config": to_dict(self.cfg.loss)}

    def train_step(self, ctx: loop.Context, step: int) -> loop.StepOutput:
        accum, dev, loss = ctx.settings.accumulation, ctx.device, self.loss
        if self.gumbel:
            self.model.quantize.temperature = gumbel_temperature(self.cfg.gumbel, step)
        micro: list[tuple[torch.Tensor, torch.Tensor]] = []
        total = torch.zeros((), device=dev)
        for i in range(accum):
            x = ctx.next_batch()["image"].to(dev, non_blocking=True)  # (B, C, H, W)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            last = i == accum - 1 or not ctx.dist.distributed
            with contextlib.nullcontext() if last else ctx.ddp_model.no_sync():
                g = generator_step(ctx.ddp_model, loss, x, step, 1.0 / accum, ctx.autocast)
            micro.append((x, g.reconstruction))
            total += g.logs["total_loss"].float() / accum
            self.usage.update(g.indices, sync=False)  # rank 0 logs its own batches
        d_logs: dict[str, torch.Tensor] = {}
        losses = {"total_loss": total}
        if loss.disc_factor(step) > 0:
            d_total = torch.zeros((), device=dev)
            for x, xrec in micro:
                d_logs = discriminator_step(loss, x, xrec, step, 1.0 / accum, ctx.autocast)
                d_total += d_logs["disc_loss"].float() / accum
            D.all_reduce_grads(self.optimizers["disc"][1], ctx.dist)
            losses["disc_loss"] = d_total
        else:
            # NOTE: before disc_start the original still steps the discriminator's Adam with an all-zero loss
            # (its step count grows, its weights do not change); vqforge skips the two forward passes but
            # takes the same zero-gradient step so that the Adam state matches.
            for p in self.optimizers["disc"][1]:
                p.grad = torch.zeros_like(p)
        self.last = micro[-1]
        logs = {f"train/{k}": v for k, v in {**g.logs, **d_logs}.items()}
        logs["train/codebook_usage"] = self.usage.usage()
        logs["train/perplexity"] = perplexity(g.indices, self.model.n_codes)
        if self.gumbel:
            logs["train/gumbel_temperature"] = float(self.model.quantize.temperature)
        return loop.StepOutput(losses, logs)

    def after_update(self, ctx: loop.Context) -> None:
        # BatchNorm statistics move on every rank's own batches: keep rank 0's (as DDP's broadcast_buffers).
        D.broadcast_module(self.loss.discriminator, ctx.dist, buffers_only=True)

    def validate(self, ctx: loop.Context, model: nn.Module) -> dict[str, float]:
        return validate(model, self.val_data, ctx.settings.batch_size, ctx.device, ctx.settings.workers)

    def preview(self, ctx: loop.Context, step: int, path: Path) -> None:
        if self.last is not None:
            x, xrec = self.last
            k = min(8, x.shape[0])
            save_grid(path, torch.cat([x[:k], xrec[:k].float()]), nrow=k)

    def state_modules(self) -> list[nn.Module]:
        return [self.model, self.loss.discriminator]

    def next_steps(self, run: Path) -> list[str]:
        return [f"vqforge reconstruct --model {run} --data PHOTOS --out recon/",
                f"vqforge encode --model {run} --data PHOTOS --out tokens/"]


# ============================================================================================ entry points
def config_of_run(run_dir: str | Path) -> VQGANRunConfig:
    """The config of the run in ``run_dir`` (from ``checkpoints/last.pt``, else ``config.yaml``)."""
    from .checkpoint import RunDir

    run = RunDir(run_dir)
    if run.has_checkpoint():
        ckpt = run.load()
        if ckpt.trainer != "vqgan":
            raise VQForgeError(f"{run.last}: written by `vqforge train {ckpt.trainer}`, not a VQGAN training run")
        return config_from_data(VQGANRunConfig, ckpt.train_config, OLD, run.last)
    if run.config_path.is_file():
        return load_config(run.config_path)
    raise VQForgeError(f"{run_dir}: not a vqforge run directory (no checkpoints/last.pt or config.yaml)")


def train_vqgan(cfg: VQGANRunConfig | None, out_dir: str | Path, resume: bool = False,
                overrides: list[str] | tuple[str, ...] = (), settings: dict[str, Any] | None = None,
                **options: Any) -> loop.RunResult:
    """Train (or, with ``resume``, continue training) a VQGAN into the run directory ``out_dir``.

    ``cfg`` None with ``resume``: the run's own config. ``overrides`` (dotted ``key=value``) and
    ``settings`` (``train`` fields) change it. ``options``: :class:`~vqforge.train.loop.RunOptions` fields
    (``max_steps``, ``stop_after``, ``time_limit`` seconds, ``quiet``, ``json``). Works in one process or
    under ``torchrun``; SIGINT / SIGTERM / the time limit save ``checkpoints/last.pt`` and return early
    (``stopped_by`` says why).
    """
    run, ckpt = loop.resume_checkpoint(out_dir, resume, "vqgan")
    cfg = loop.configure(cfg, ckpt, VQGANRunConfig, OLD, run.last, overrides, settings)
    check_memory(cfg, options.pop("budget", None))
    return loop.run(VQGANStage(cfg), cfg, run, ckpt, loop.RunOptions(**options))


_OLD_NAMES = {"VQGANTrainConfig": "VQGANRunConfig", "load_run_config": "config_of_run"}  # one release more, warned
__getattr__ = renamed_names(__name__, globals(), _OLD_NAMES)
