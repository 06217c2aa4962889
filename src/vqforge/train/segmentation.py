"""Training the segmentation condition stage (``vqforge train segmentation``), like the original's
``VQSegmentationModel``: a VQGAN whose input and output are one-hot label maps with ``n_labels`` channels,
trained with binary cross-entropy on the logits plus the codebook loss (no perceptual or GAN loss), Adam
with betas (0.5, 0.9). Logged: ``train/bce``, ``train/quant``, ``train/loss``, ``val/pixel_accuracy`` and
colourised input | reconstruction grids (a fixed colour per label).

The result is an ordinary ``vqgan`` checkpoint: ``vqforge.load(RUN_DIR)`` returns the VQGAN, usable as
``--cond-stage`` for ``vqforge encode`` / ``vqforge train transformer`` with segmentation conditioning.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import imageio
from ..config import ConfigError, from_dict
from ..io import VQForgeError
from ..models.conditioning import colorize_labels, one_hot_labels
from ..models.vqgan import VQGAN, VQGANConfig
from . import common as C


@dataclass(frozen=True)
class SegmentationTrainConfig:
    """Settings of a segmentation-stage run (``learning_rate`` > 0 is used as is, else the original's
    ``base_learning_rate`` x batch rule). ``label_shift``: add this to every label id modulo 256 before use
    (COCO-Stuff maps use 1, so that 255 = unlabeled becomes 0). ``init_bias_from_data``: start the decoder's
    output bias at the labels' log-odds in the training maps (a vqforge addition; the BCE then starts at the
    prior's loss instead of spending its first steps learning that almost every channel is 0). ``resize_max``:
    if larger than ``size``, each random training crop resizes the smallest side to a size drawn from
    ``[size, resize_max]`` first (crops at several scales)."""

    batch_size: int = 12
    base_learning_rate: float = 4.5e-6
    learning_rate: float = 0.0
    betas: tuple[float, ...] = (0.5, 0.9)
    codebook_weight: float = 1.0
    max_steps: int = 100_000
    size: int = 256
    resize_max: int = 0
    label_shift: int = 0
    seed: int = 0
    val_fraction: float = 0.1
    val_every: int = 1000
    image_every: int = 1000
    log_every: int = 50
    checkpoint_every: int = 1000
    workers: int = 0
    init_bias_from_data: bool = True
    device: str = "auto"


@dataclass(frozen=True)
class SegmentationRunConfig:
    """``model`` is the VQGAN (``ddconfig.in_channels == out_ch == n_labels``)."""

    n_labels: int = 182
    model: VQGANConfig = field(default_factory=VQGANConfig)
    train: SegmentationTrainConfig = field(default_factory=SegmentationTrainConfig)


class SegmentationMaps(torch.utils.data.Dataset):
    """Label maps (8-bit PNG, one id per pixel) -> ``{"labels": (size, size) int64}``: the smallest side
    resized to ``size`` (random crops: drawn from ``[size, resize_max]`` when that is larger) with NEAREST,
    then a random (train) or center crop."""

    def __init__(self, files: list[Path], size: int, n_labels: int, random_crop: bool = True, label_shift: int = 0,
                 resize_max: int = 0):
        if not files:
            raise VQForgeError("no segmentation maps found")
        self.files, self.size, self.n_labels = files, size, n_labels
        self.random_crop, self.label_shift, self.resize_max = random_crop, label_shift, resize_max

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key) -> dict[str, Any]:
        i, seed = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (int(key), 0)
        path = self.files[i]
        img = imageio.read_image(path, mode=None)  # one-line error for an unreadable file
        if img.mode not in ("L", "P", "I"):
            raise VQForgeError(f"{path}: expected a single-channel label map, got mode {img.mode}")
        w, h = img.size
        rng = random.Random(seed)
        short = rng.randint(self.size, self.resize_max) if self.random_crop and self.resize_max > self.size else self.size
        s = short / min(w, h)
        img = img.resize((max(short, round(w * s)), max(short, round(h * s))), Image.NEAREST)
        w, h = img.size
        left, top = ((rng.randint(0, w - self.size), rng.randint(0, h - self.size)) if self.random_crop
                     else ((w - self.size) // 2, (h - self.size) // 2))
        arr = np.array(img.crop((left, top, left + self.size, top + self.size)), dtype=np.int64)
        if self.label_shift:
            arr = (arr + self.label_shift) % 256
        if arr.max() >= self.n_labels:
            raise VQForgeError(f"{path}: label id {int(arr.max())} >= n_labels={self.n_labels}")
        return {"labels": torch.from_numpy(arr)}


def pixel_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of pixels whose argmax label equals the target label."""
    return (logits.argmax(1) == labels).float().mean().item()


def train_segmentation(cfg: SegmentationRunConfig, data: str, out: str | Path, max_steps: int | None = None,
                       progress: bool = True, resume: bool = False) -> dict[str, float]:
    """Train (or resume) the segmentation VQGAN on the label maps under ``data``; returns final metrics."""
    from ..data.images import find_images, split_files

    run = C.RunDir(out)
    if not resume and run.has_checkpoint():
        raise VQForgeError(f"{run.path}: already holds a run (checkpoints/last.pt); continue it with "
                           f"--resume {run.path} or choose another --out")
    ckpt = None
    if resume:
        ckpt = run.load_last()
        try:
            cfg = from_dict(SegmentationRunConfig, ckpt["train_config"])
        except (ConfigError, KeyError) as e:
            raise VQForgeError(f"{run.last}: {e}") from None
    if max_steps is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=max_steps))
    tc, dd = cfg.train, cfg.model.ddconfig
    if dd.in_channels != cfg.n_labels or dd.out_ch != cfg.n_labels:
        raise VQForgeError(f"model.ddconfig in_channels/out_ch must equal n_labels={cfg.n_labels} "
                           f"(got {dd.in_channels}/{dd.out_ch})")
    dist = C.setup_distributed(tc.device)
    device = dist.device
    C.seed_everything(tc.seed)
    model = VQGAN(cfg.model).to(device)
    files = find_images(data)
    if tc.val_fraction > 0:
        tr, va = split_files(files, tc.val_fraction, seed=tc.seed)
    else:  # validate on center crops of the training maps (reconstruction accuracy)
        tr, va = files, files
    train_ds = SegmentationMaps(tr, tc.size, cfg.n_labels, True, tc.label_shift, tc.resize_max)
    val_ds = SegmentationMaps(va, tc.size, cfg.n_labels, False, tc.label_shift) if va else None
    lr = tc.learning_rate if tc.learning_rate > 0 else C.scaled_lr(tc.base_learning_rate, tc.batch_size, 1,
                                                                    dist.world_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(tc.betas))
    ddp = C.wrap_ddp(model, dist)
    stream = C.BatchStream(train_ds, tc.batch_size, C.ResumableSampler(len(train_ds), seed=tc.seed, rank=dist.rank,
                           world_size=dist.world_size, with_seeds=True), tc.workers, name=data)
    step = 0
    if ckpt is None and tc.init_bias_from_data:
        counts = torch.zeros(cfg.n_labels)
        for i in range(min(len(train_ds), 256)):
            counts += torch.bincount(train_ds[(i, tc.seed)]["labels"].flatten(), minlength=cfg.n_labels).float()
        p = ((counts + 0.5) / (counts.sum() + 0.5 * cfg.n_labels)).clamp(1e-6, 1 - 1e-6)
        with torch.no_grad():
            model.decoder.conv_out.bias.copy_(torch.log(p / (1 - p)).to(device))
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizers"]["vqgan"])
        stream.load_state_dict(ckpt["data"])
        step = int(ckpt["step"])
        if len(ckpt.get("rng") or []) > dist.rank:
            C.set_rng_state(ckpt["rng"][dist.rank])
    elif dist.is_main:
        run.write_config(cfg)
    logger = C.MetricLogger(run.path, enabled=dist.is_main, purge_step=step if ckpt is not None else None)
    metrics: dict[str, float] = {}

    @torch.no_grad()
    def validate(save_grid: bool) -> dict[str, float]:
        ds = val_ds if val_ds is not None else train_ds
        model.eval()
        correct = total = 0.0
        first = None
        for i in range(0, len(ds), tc.batch_size):
            labels = torch.stack([ds[j]["labels"] for j in range(i, min(len(ds), i + tc.batch_size))]).to(device)
            rec = model(one_hot_labels(labels, cfg.n_labels)).reconstruction
            correct += (rec.argmax(1) == labels).float().sum().item()
            total += labels.numel()
            first = (labels, rec) if first is None else first
        model.train()
        if save_grid and dist.is_main and first is not None:
            labels, rec = first
            grid = torch.cat([colorize_labels(labels[:8], cfg.n_labels), colorize_labels(rec[:8], cfg.n_labels)])
            imageio.save_grid(run.images / f"seg_{step:07d}.png", grid, nrow=min(8, len(labels)))
        return {"val/pixel_accuracy": correct / max(total, 1)}

    model.train()
    bar = C.progress_bar(tc.max_steps, initial=step, enabled=progress and dist.is_main, desc="train segmentation")
    t0 = time.time()
    with C.StopRequest() as stop:
        while step < tc.max_steps:
            labels = next(stream)["labels"].to(device)
            x = one_hot_labels(labels, cfg.n_labels)  # (B, n_labels, H, W) in {0, 1}
            out = ddp(x)
            bce = F.binary_cross_entropy_with_logits(out.reconstruction, x)
            qloss = out.quantizer.losses["loss"]
            loss = bce + tc.codebook_weight * qloss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            if step % tc.log_every == 0 or step == 1:
                logger.log(step, {"train/loss": loss.item(), "train/bce": bce.item(), "train/quant": qloss.item(),
                                  "train/pixel_accuracy": pixel_accuracy(out.reconstruction.detach(), labels),
                                  "train/steps_per_s": step / max(time.time() - t0, 1e-9)})
                bar.set_postfix(bce=f"{bce.item():.4f}")
            if tc.val_every > 0 and step % tc.val_every == 0:
                metrics = validate(tc.image_every > 0 and step % tc.image_every == 0)
                logger.log(step, metrics)
            if tc.checkpoint_every > 0 and step % tc.checkpoint_every == 0:
                _save(run, cfg, model, opt, step, dist, stream)
            if stop.should_stop(dist):
                break
    bar.close()
    if not metrics or (tc.val_every > 0 and step % tc.val_every):
        metrics = validate(True)
        logger.log(step, metrics)
    _save(run, cfg, model, opt, step, dist, stream)
    logger.close()
    C.teardown_distributed(dist)
    return {**metrics, "step": step}


def _save(run, cfg, model, opt, step, dist, stream) -> None:
    # NOTE: kind "vqgan": the model is a plain VQGAN over label maps; train_config holds the whole run config
    ckpt = C.make_checkpoint("vqgan", cfg.model, model, step, {"vqgan": opt}, cfg, rng=C.gather_rng_states(dist),
                             data=stream.state_dict(), n_labels=cfg.n_labels)
    if dist.is_main:
        run.save_checkpoint(ckpt, step)


def load_segmentation_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SegmentationRunConfig:
    """A segmentation run config from YAML plus ``key=value`` overrides."""
    from ..config import apply_overrides, load_yaml

    try:
        return apply_overrides(load_yaml(SegmentationRunConfig, path), list(overrides))
    except ConfigError as e:
        raise VQForgeError(str(e)) from None
