"""Training a VQGAN first stage: a plain PyTorch loop with a named generator step and discriminator step.

Entry point: :func:`train_vqgan` (used by ``vqforge train vqgan``). One process, or many under ``torchrun``
(DDP for the autoencoder; the small discriminator's gradients are averaged explicitly). A run directory
holds ``config.yaml`` (the resolved :class:`VQGANTrainConfig`), ``checkpoints/last.pt`` (+ kept
``step_NNNNNNN.pt``), ``metrics.jsonl``, ``tb/`` (TensorBoard) and ``images/`` (input/reconstruction grids).
``vqforge.load(RUN_DIR)`` returns the trained :class:`~vqforge.models.vqgan.VQGAN` (EMA weights if enabled).

Per optimisation step (``optim.accumulation`` micro-batches each):

1. :func:`generator_step` on each micro-batch: autoencoder forward, ``VQGANLoss.generator_loss``
   (reconstruction + perceptual + codebook + adaptive-weight GAN term), backward; then the autoencoder's
   Adam step.
2. :func:`discriminator_step` on each micro-batch, with the DETACHED reconstruction kept from step 1; then
   the discriminator's Adam step. NOTE: the original recomputes the autoencoder forward for the
   discriminator (after the autoencoder's update); vqforge reuses the reconstruction, which saves a full
   autoencoder forward per step and differs only by that one update.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import nn

from ..imageio import save_grid
from ..config import ConfigError, from_dict, to_dict
from ..data.images import ImageDataset, SkipCounter, find_images, split_files
from ..io import VQForgeError, write_text
from ..losses.vqgan_loss import VQGANLoss, VQGANLossConfig
from ..metrics import psnr, ssim
from ..models.vqgan import VQGAN, VQGANConfig
from ..quantizers import perplexity
from ..quantizers.usage import CodebookUsage
from . import common
from .common import DistInfo

KIND = "vqgan"


# ============================================================================================ config
@dataclass(frozen=True)
class DataConfig:
    """Training images.

    train / val: a folder (recursive), a ``.txt`` file list or a glob (set by ``--data`` / ``--val-data``),
    or ``fashion-mnist`` (Debian's ``dataset-fashion-mnist``: its train split trains, the first
    ``max_val_images`` of its test split validate; images are 1-channel, zero-padded or area-resized to
    ``size``); without ``val``, ``val_fraction`` of ``train`` is held out (deterministically, by ``seed``).
    size: crop side; resize: the smallest side is resized to this before cropping (0: ``size``, as the
    original); resize_max: if larger than ``resize``, each random training crop draws the smallest side
    from ``[resize, resize_max]`` (crops at several scales); crop: ``random`` (training) crops; validation always uses center crops; flip: random
    horizontal flips. batch_size: per process. workers: DataLoader worker processes per process.
    max_val_images: cap on validation images.
    """

    train: str = ""
    val: str = ""
    val_fraction: float = 0.05
    size: int = 256
    resize: int = 0
    resize_max: int = 0
    crop: Literal["random", "center"] = "random"
    flip: bool = False
    batch_size: int = 12
    workers: int = 4
    max_val_images: int = 256


@dataclass(frozen=True)
class OptimConfig:
    """Two Adam optimisers (autoencoder, discriminator) with the original's betas (0.5, 0.9).

    lr: the learning rate; when ``None`` it is ``base_lr``, times ``batch_size * accumulation * world_size``
    if ``scale_lr`` (the original's rule). The resolved value is written back into the run's config.yaml.
    accumulation: micro-batches per optimisation step.
    """

    lr: float | None = None
    base_lr: float = 4.5e-6
    scale_lr: bool = True
    betas: tuple[float, float] = (0.5, 0.9)
    accumulation: int = 1


@dataclass(frozen=True)
class ScheduleConfig:
    """When things happen, in optimisation steps (0 disables a periodic job).

    max_steps: total steps. log_every: scalars. image_every: input/reconstruction grid. ckpt_every:
    ``last.pt``. keep_every: also keep ``step_NNNNNNN.pt``. val_every: validation L1 / PSNR / SSIM.
    usage_window: steps over which codebook usage (fraction of codes hit) is measured.
    """

    max_steps: int = 100_000
    log_every: int = 50
    image_every: int = 1000
    ckpt_every: int = 1000
    keep_every: int = 10_000
    val_every: int = 1000
    usage_window: int = 100


@dataclass(frozen=True)
class EMAConfig:
    """Optional exponential moving average of the autoencoder's weights (saved as the checkpoint's ``ema``)."""

    enabled: bool = False
    decay: float = 0.999


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
class VQGANTrainConfig:
    """Everything a VQGAN training run needs (the YAML files in ``configs/vqgan_*.yaml``)."""

    model: VQGANConfig = field(default_factory=VQGANConfig)
    loss: VQGANLossConfig = field(default_factory=VQGANLossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    gumbel: GumbelTemperatureConfig = field(default_factory=GumbelTemperatureConfig)
    seed: int = 23
    device: str = "auto"
    bf16: bool = True
    channels_last: bool = True
    cpu_bf16: bool = False


def gumbel_temperature(cfg: GumbelTemperatureConfig, step: int) -> float:
    """The gumbel temperature at ``step`` (warm-up then cosine decay)."""
    if step < cfg.warm_up_steps:
        return (cfg.max - cfg.start) / max(cfg.warm_up_steps, 1) * step + cfg.start
    t = min((step - cfg.warm_up_steps) / max(cfg.max_decay_steps - cfg.warm_up_steps, 1), 1.0)
    return cfg.min + 0.5 * (cfg.max - cfg.min) * (1 + math.cos(t * math.pi))


def resolve_lr(cfg: VQGANTrainConfig, world_size: int) -> float:
    """The learning rate this run uses (see :class:`OptimConfig`)."""
    o = cfg.optim
    if o.lr is not None:
        return o.lr
    if o.scale_lr:
        return common.scaled_lr(o.base_lr, cfg.data.batch_size, o.accumulation, world_size)
    return o.base_lr


# ============================================================================================ steps
class GeneratorResult(NamedTuple):
    """What :func:`generator_step` hands on: the detached reconstruction, the code ids and the loss logs."""

    reconstruction: torch.Tensor  # (B, C, H, W), detached
    indices: torch.Tensor  # (B, h, w)
    logs: dict[str, torch.Tensor]


def generator_step(model: nn.Module, loss: VQGANLoss, x: torch.Tensor, step: int, scale: float = 1.0,
                   amp: bool = False) -> GeneratorResult:
    """Autoencoder forward + ``generator_loss`` + backward of ``scale * total`` for one (micro-)batch.

    ``model`` may be DDP-wrapped. The discriminator's parameters are frozen during this step (gradients
    flow through it to the reconstruction only). Does not step the optimiser.
    """
    core: VQGAN = common.unwrap(model)  # type: ignore[assignment]
    loss.discriminator.requires_grad_(False)
    try:
        with common.autocast(x.device, amp, cpu_bf16=True):
            out = model(x)
            xrec = out.reconstruction  # (B, C, H, W)
            total, logs = loss.generator_loss(x, xrec, out.quantizer.losses["loss"], core.last_layer, step)
        (total * scale).backward()
    finally:
        loss.discriminator.requires_grad_(True)
    return GeneratorResult(xrec.detach(), out.quantizer.indices.detach(), logs)


def discriminator_step(loss: VQGANLoss, x: torch.Tensor, xrec_detached: torch.Tensor, step: int,
                       scale: float = 1.0, amp: bool = False) -> dict[str, torch.Tensor]:
    """``discriminator_loss`` on real ``x`` and the detached reconstruction + backward of ``scale * loss``.

    Does not step the optimiser. NOTE: the original recomputes the reconstruction here; see the module doc.
    """
    with common.autocast(x.device, amp, cpu_bf16=True):
        d_loss, logs = loss.discriminator_loss(x, xrec_detached.detach(), step)
    (d_loss * scale).backward()
    return logs


# ============================================================================================ helpers
def build_datasets(cfg: VQGANTrainConfig) -> tuple[ImageDataset, ImageDataset]:
    """Training and validation datasets from ``cfg.data`` (a held-out split when ``val`` is empty)."""
    d = cfg.data
    if not d.train:
        raise VQForgeError("train vqgan: no training data (pass --data PATH)")
    if d.train.split(":", 1)[0] == "fashion-mnist":
        from ..data.fashion_mnist import FashionMNIST

        if d.train not in ("fashion-mnist", "fashion-mnist:train") or d.val:
            raise VQForgeError(f"{d.train}: Fashion-MNIST trains on its train split and validates on its test "
                               f"split (use --data fashion-mnist, without --val-data)")
        ch = cfg.model.ddconfig.in_channels
        return (FashionMNIST("train", d.size, ch),  # type: ignore[return-value]
                FashionMNIST("test", d.size, ch, limit=d.max_val_images))
    files = find_images(d.train)
    if d.val:
        train_files, val_files = files, find_images(d.val)
        val_source = d.val
    else:
        train_files, val_files = split_files(files, d.val_fraction, seed=cfg.seed)
        val_source = f"{d.train} (held-out split)"
    val_files = val_files[: d.max_val_images]
    train = ImageDataset(train_files, size=d.size, crop=d.crop, flip=d.flip, source=d.train, resize=d.resize,
                         resize_max=d.resize_max)
    val = ImageDataset(val_files, size=d.size, crop="center", flip=False, source=val_source, resize=d.resize)
    return train, val


@torch.no_grad()
def validate(model: VQGAN, val: ImageDataset, batch_size: int, device: torch.device, amp: bool,
             workers: int = 0) -> dict[str, float]:
    """Mean L1, PSNR, SSIM and code perplexity of ``model`` on ``val`` (center crops)."""
    sampler = common.ResumableSampler(len(val), shuffle=False, drop_last=False, with_seeds=True)
    loader = torch.utils.data.DataLoader(val, batch_size=batch_size, sampler=sampler, num_workers=min(workers, 2))
    was_training = model.training
    model.eval()
    l1, ps, ss, n = 0.0, 0.0, 0.0, 0
    usage = CodebookUsage(model.n_codes)
    for batch in loader:
        x = batch["image"].to(device)
        with common.autocast(device, amp, cpu_bf16=True):
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


def state_hash(*modules: nn.Module) -> str:
    """SHA-256 over the parameters and buffers of ``modules`` (for checking that DDP ranks agree)."""
    h = hashlib.sha256()
    for m in modules:
        for k, v in common.unwrap(m).state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                     if v.numel() else b"")
    return h.hexdigest()


class TrainResult(NamedTuple):
    """How a call of :func:`train_vqgan` ended."""

    step: int
    stopped_by: str  # "" when max_steps was reached, else the signal name
    run_dir: Path
    last_val: dict[str, float]


def load_run_config(run_dir: str | Path) -> VQGANTrainConfig:
    """The training config stored in ``RUN_DIR/checkpoints/last.pt`` (falls back to config.yaml)."""
    run = common.RunDir(run_dir)
    if run.has_checkpoint():
        ckpt = run.load_last()
        if ckpt.get("kind") != KIND:
            raise VQForgeError(f"{run.last}: a {ckpt.get('kind')!r} checkpoint, not a VQGAN training run")
        try:
            return from_dict(VQGANTrainConfig, ckpt["train_config"])
        except ConfigError as e:
            raise VQForgeError(f"{run.last}: {e}") from None
    if run.config_path.is_file():
        from ..config import load_yaml

        return load_yaml(VQGANTrainConfig, run.config_path)
    raise VQForgeError(f"{run_dir}: not a vqforge run directory (no checkpoints/last.pt or config.yaml)")


# ============================================================================================ the loop
def train_vqgan(cfg: VQGANTrainConfig, out_dir: str | Path, resume: bool = False,
                max_steps: int | None = None, show_progress: bool = True,
                max_seconds: float | None = None) -> TrainResult:
    """Train (or, with ``resume``, continue training) a VQGAN into the run directory ``out_dir``.

    ``max_steps`` overrides ``cfg.schedule.max_steps``; ``max_seconds`` stops (with a checkpoint) after that
    much training time. Works in one process or under ``torchrun``. SIGINT / SIGTERM save
    ``checkpoints/last.pt`` and return early (``stopped_by`` names the signal, or ``time limit``).
    """
    dist = common.setup_distributed(cfg.device)
    try:
        return _train(cfg, common.RunDir(out_dir), dist, resume, max_steps, show_progress, max_seconds)
    finally:
        common.teardown_distributed(dist)


def _train(cfg: VQGANTrainConfig, run: common.RunDir, dist: DistInfo, resume: bool, max_steps: int | None,
           show_progress: bool, max_seconds: float | None = None) -> TrainResult:
    device = dist.device
    on_cuda = device.type == "cuda"
    amp = cfg.bf16 and (on_cuda or (cfg.cpu_bf16 and common.cpu_bf16_supported()))
    if max_steps is not None:
        cfg = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, max_steps=max_steps))
    lr = resolve_lr(cfg, dist.world_size)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=lr))
    sched, accum = cfg.schedule, cfg.optim.accumulation
    if accum < 1:
        raise ConfigError(f"optim.accumulation must be >= 1, got {accum}")
    if cfg.loss.disc_in_channels != cfg.model.ddconfig.out_ch or cfg.loss.disc_conditional:
        raise ConfigError("train vqgan: loss.disc_in_channels must equal model.ddconfig.out_ch "
                          "(conditional discriminators are not supported by this trainer)")

    common.seed_everything(cfg.seed + dist.rank)
    train_ds, val_ds = build_datasets(cfg)

    model = VQGAN(cfg.model).to(device)
    loss = VQGANLoss(cfg.loss).to(device)
    if on_cuda and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
        loss = loss.to(memory_format=torch.channels_last)
    # The discriminator is not DDP-wrapped (it runs several times per step); rank 0's init is broadcast and
    # its gradients are averaged explicitly.
    common.broadcast_module(loss.discriminator, dist)
    opt_ae = torch.optim.Adam(model.parameters(), lr=lr, betas=cfg.optim.betas)
    opt_disc = torch.optim.Adam(loss.discriminator.parameters(), lr=lr, betas=cfg.optim.betas)
    ema = common.EMA(model, cfg.ema.decay) if cfg.ema.enabled else None

    sampler = common.ResumableSampler(len(train_ds), shuffle=True, seed=cfg.seed, rank=dist.rank,
                                      world_size=dist.world_size, drop_last=True, with_seeds=True)
    stream = common.BatchStream(train_ds, cfg.data.batch_size, sampler, workers=cfg.data.workers,
                                pin_memory=on_cuda, name=cfg.data.train)

    step = 0
    if resume:
        ckpt = run.load_last()
        try:
            model.load_state_dict(ckpt["model"])
            loss.discriminator.load_state_dict(ckpt["discriminator"])
            opt_ae.load_state_dict(ckpt["optimizers"]["ae"])
            opt_disc.load_state_dict(ckpt["optimizers"]["disc"])
            if ema is not None and ckpt.get("ema") is not None:
                ema.load_state_dict(ckpt["ema"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise VQForgeError(f"{run.last}: cannot resume from this checkpoint ({str(e).splitlines()[0]})") from None
        step = int(ckpt["step"])
        stream.load_state_dict(ckpt["data"])
        rng = ckpt.get("rng") or []
        if len(rng) == dist.world_size:
            common.set_rng_state(rng[dist.rank])
        elif dist.is_main:
            warnings.warn(f"{run.last}: saved with {len(rng)} processes, resuming with {dist.world_size}; "
                          f"random streams restart from the seed")
        del ckpt
    if dist.is_main:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(cfg)

    if step >= sched.max_steps:
        if dist.is_main:
            print(f"vqforge: {run.path}: already at step {step} >= max_steps {sched.max_steps}; nothing to do "
                  f"(raise it with --max-steps)")
        return TrainResult(step, "", run.path, {})
    ddp_model = common.wrap_ddp(model, dist)
    logger = common.MetricLogger(run.path, enabled=dist.is_main, purge_step=step + 1 if resume else None)
    skips = SkipCounter()
    usage_window = CodebookUsage(model.n_codes, window=max(sched.usage_window, 1))
    last_val: dict[str, float] = {}
    ae_params = list(model.parameters())
    disc_params = list(loss.discriminator.parameters())
    gumbel = cfg.model.quantizer.kind == "gumbel" and cfg.gumbel.enabled

    def save(at: int, keep: bool) -> None:
        ckpt = common.make_checkpoint(
            KIND, cfg.model, model, at, {"ae": opt_ae, "disc": opt_disc}, cfg, ema=ema,
            rng=common.gather_rng_states(dist), data=stream.state_dict(),
            discriminator={k: v.detach().cpu() for k, v in loss.discriminator.state_dict().items()},
            loss_config=to_dict(cfg.loss))
        if dist.is_main:
            run.save_checkpoint(ckpt, at, keep=keep)

    def every(n: int, at: int) -> bool:
        return n > 0 and at % n == 0

    bar = common.progress_bar(sched.max_steps, initial=step, enabled=dist.is_main and show_progress,
                              desc="train vqgan")
    stopped_by = ""
    model.train()
    loss.train()
    t_last, steps_since = time.perf_counter(), 0
    saved = False
    val_step = -1

    ema_model: VQGAN | None = None

    def run_validation() -> None:
        nonlocal last_val, val_step, ema_model
        if dist.is_main:
            last_val = validate(model, val_ds, cfg.data.batch_size, device, amp, cfg.data.workers)
            if ema is not None:  # the averaged weights too (those are what vqforge.load returns)
                if ema_model is None:
                    ema_model = copy.deepcopy(model)
                ema.copy_to(ema_model)
                ema_val = validate(ema_model, val_ds, cfg.data.batch_size, device, amp, cfg.data.workers)
                last_val.update({k.replace("val/", "val_ema/"): v for k, v in ema_val.items()})
            logger.log(step, last_val)
            bar.write(f"step {step}: val L1 {last_val['val/l1']:.4f}  PSNR {last_val['val/psnr']:.2f} dB  "
                      f"SSIM {last_val['val/ssim']:.4f}")
        val_step = step
        common.barrier(dist)

    if step == 0 and sched.val_every > 0:  # the untrained baseline
        run_validation()
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None
    with common.StopRequest() as stop:
        while step < sched.max_steps:
            if gumbel:
                model.quantize.temperature = gumbel_temperature(cfg.gumbel, step)
            # ---- generator (autoencoder) update over `accum` micro-batches
            opt_ae.zero_grad(set_to_none=True)
            micro: list[tuple[torch.Tensor, torch.Tensor]] = []
            for i in range(accum):
                batch = next(stream)
                if skips.update(batch) and dist.is_main:
                    bar.write(f"vqforge: skipped {len(skips)} unreadable image(s) so far")
                x = batch["image"].to(device, non_blocking=True)  # (B, 3, H, W)
                if on_cuda and cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                sync = contextlib.nullcontext() if (i == accum - 1 or not dist.distributed) else ddp_model.no_sync()
                with sync:
                    g = generator_step(ddp_model, loss, x, step, scale=1.0 / accum, amp=amp)
                micro.append((x, g.reconstruction))
                usage_window.update(g.indices, sync=False)  # rank 0 logs its own batches
            ae_norm = common.grad_norm(ae_params) if every(sched.log_every, step + 1) else None
            opt_ae.step()
            if ema is not None:
                ema.update(model)
            # ---- discriminator update on the detached reconstructions
            opt_disc.zero_grad(set_to_none=True)
            d_logs: dict[str, torch.Tensor] = {}
            if loss.disc_factor(step) > 0:
                for x, xrec in micro:
                    d_logs = discriminator_step(loss, x, xrec, step, scale=1.0 / accum, amp=amp)
                common.all_reduce_grads(disc_params, dist)
            else:
                # NOTE: before disc_start the original still steps the discriminator's Adam with an all-zero
                # loss (its step count grows, its weights do not change); vqforge skips the two forward
                # passes but takes the same zero-gradient step so that the Adam state matches.
                for p in disc_params:
                    p.grad = torch.zeros_like(p)
            opt_disc.step()
            # BatchNorm statistics move on every rank's own batches: keep rank 0's (as DDP's broadcast_buffers).
            common.broadcast_module(loss.discriminator, dist, buffers_only=True)
            del micro[:-1]
            step += 1
            steps_since += 1
            bar.update(1)

            # ---- periodic jobs (rank 0 writes; collectives run on every rank)
            if dist.is_main and every(sched.log_every, step):
                now = time.perf_counter()
                scalars = {f"train/{k}": float(v) for k, v in g.logs.items()}
                scalars.update({f"train/{k}": float(v) for k, v in d_logs.items()})
                scalars.update({
                    "train/lr": lr,
                    "train/grad_norm": ae_norm or 0.0,
                    "train/codebook_usage": usage_window.usage(),
                    "train/perplexity": float(perplexity(g.indices, model.n_codes)),
                    "train/it_per_s": steps_since / max(now - t_last, 1e-9),
                    "data/skipped_images": float(len(skips)),
                })
                if gumbel:
                    scalars["train/gumbel_temperature"] = float(model.quantize.temperature)
                logger.log(step, scalars)
                bar.set_postfix(loss=f"{scalars['train/total_loss']:.4f}", rec=f"{scalars['train/rec_loss']:.4f}")
                t_last, steps_since = now, 0
            if dist.is_main and every(sched.image_every, step):
                x, xrec = micro[-1]
                k = min(8, x.shape[0])
                save_grid(run.images / f"step_{step:07d}.png", torch.cat([x[:k], xrec[:k].float()]), nrow=k)
            if every(sched.val_every, step):
                run_validation()
            out_of_time = deadline is not None and time.monotonic() > deadline
            if stop.should_stop(dist) or common.any_rank(out_of_time, dist):
                stopped_by = stop.signal_name or ("time limit" if out_of_time else "signal")
                break
            saved = False
            if every(sched.ckpt_every, step) or every(sched.keep_every, step):
                save(step, keep=every(sched.keep_every, step))
                saved = True
        if val_step != step:  # final validation
            run_validation()
        bar.close()
        if not saved or stopped_by:
            save(step, keep=False)
    logger.close()
    if dist.is_main and stopped_by:
        why = "time limit reached" if stopped_by == "time limit" else f"{stopped_by} received"
        print(f"vqforge: {why}; saved {run.last} at step {step}. "
              f"Continue with: vqforge train vqgan --resume {run.path}")
    if os.environ.get("VQFORGE_DEBUG_STATE_HASH"):
        # Each rank writes a hash of its weights so that tests can check that DDP kept them identical.
        write_text(run.path / "debug" / f"state_hash_rank{dist.rank}.txt",
                   f"{state_hash(model)} {state_hash(loss.discriminator)}\n")
    return TrainResult(step, stopped_by, run.path, last_val)
