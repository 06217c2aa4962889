"""Training the second stage: a GPT over frozen first-stage tokens (``vqforge train transformer``).

The run config has two sections: ``model`` (:class:`TransformerConfig`; its ``first_stage`` and the
condition's ``cond_stage`` are taken from the ``--first-stage`` / ``--cond-stage`` model directories) and
``train`` (:class:`TransformerTrainConfig`). Data (``--data``) is one of

* a token dataset written by ``vqforge encode`` (``meta.json`` + ``.npy``; read directly, no encoding);
* ``fashion-mnist`` (Debian's ``dataset-fashion-mnist``; labels are its 10 classes; val = the first 2000
  images of its test split);
* images (folder, file list or glob; class labels from ImageFolder sub-folder names), encoded on the fly
  from random crops.

The loop follows the original: cross-entropy over image tokens, ``pkeep`` token noise, AdamW with betas
(0.9, 0.95) and weight decay on Linear weights only (not biases, LayerNorm, embeddings or ``pos_emb``), plus
what the original lacks: linear warmup + cosine decay, NULL-class label dropout for classifier-free
guidance, bf16 autocast on CUDA, optional activation checkpointing, DDP (``torchrun``), exact resume,
TensorBoard scalars (``train/loss``, ``val/loss``, ``val/bits_per_dim``, ``lr``) and sample grids.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..imageio import save_grid
from ..config import ConfigError, from_dict
from ..io import VQForgeError
from ..models.transformer import Net2NetTransformer, TransformerConfig, derive_config
from ..models.vqgan import VQGAN
from . import common as C
from .transformer_data import CoordCrops, TransformerData


@dataclass(frozen=True)
class TransformerTrainConfig:
    """Optimisation and bookkeeping of a transformer run.

    learning_rate: used as is when > 0; otherwise ``base_learning_rate`` x batch x accumulate x GPUs
    (the original's rule, ``scale_lr``). warmup_steps / min_lr_ratio: linear warmup then cosine decay to
    ``min_lr_ratio`` x lr at ``max_steps``. grad_clip: 0 = off (the original does not clip).
    coord_full_size: coordinate conditioning on crops of large images: each image is resized (smallest
    side) to this size, ``image_size`` crops are taken, and the coordinate map of the whole resized image
    is cropped with it (0 = the crop is the whole image, as FacesHQ).
    """

    batch_size: int = 8
    accumulate: int = 1
    base_learning_rate: float = 4.5e-6
    learning_rate: float = 0.0
    scale_lr: bool = True
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, ...] = (0.9, 0.95)
    grad_clip: float = 0.0
    max_steps: int = 100_000
    seed: int = 0
    image_size: int = 256
    coord_full_size: int = 0
    crop: Literal["random", "center"] = "random"
    flip: bool = False
    val_fraction: float = 0.05
    val_every: int = 1000
    val_batches: int = 50
    sample_every: int = 2000
    n_samples: int = 8
    sample_top_k: int = 100
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_every: int = 0
    workers: int = 0
    activation_checkpointing: bool = False
    ema_decay: float = 0.0
    bf16: bool = True
    cpu_bf16: bool = False
    device: str = "auto"


@dataclass(frozen=True)
class TransformerRunConfig:
    """A transformer run: the model pipeline and its training settings."""

    model: TransformerConfig = field(default_factory=TransformerConfig)
    train: TransformerTrainConfig = field(default_factory=TransformerTrainConfig)


# ============================================================================================ optimiser
def param_groups(gpt: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """minGPT's split: Linear weights decay; biases, LayerNorm/Embedding weights and ``pos_emb`` do not."""
    decay, no_decay = [], []
    for mn, m in gpt.named_modules():
        for pn, p in m.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            (decay if isinstance(m, nn.Linear) and pn == "weight" else no_decay).append(p)
    n_all = sum(1 for p in gpt.parameters() if p.requires_grad)
    assert len(decay) + len(no_decay) == n_all, "every parameter must be in exactly one group"
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, lr: float, warmup: int, max_steps: int, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to ``min_ratio * lr`` at ``max_steps``."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def enable_activation_checkpointing(gpt: nn.Module) -> None:
    """Recompute each block's activations in the backward pass (saves memory on long sequences)."""
    from torch.utils.checkpoint import checkpoint

    for block in gpt.blocks:
        inner = block.forward

        def fwd(x, cache=None, layer=0, start=0, _inner=inner):
            if cache is None and torch.is_grad_enabled():
                return checkpoint(_inner, x, use_reentrant=False)
            return _inner(x, cache=cache, layer=layer, start=start)

        block.forward = fwd


# ============================================================================================ sampling
@torch.no_grad()
def sample_tokens(model: Net2NetTransformer, c_indices: torch.Tensor, n_tokens: int, top_k: int | None = 100,
                  temperature: float = 1.0, greedy: bool = False, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """Image tokens (B, n_tokens) sampled after the condition tokens ``c_indices`` (B, Tc).

    A thin wrapper over :func:`vqforge.sampling.generate.sample_tokens` (exact fp32 path) with logits
    restricted to the image codebook, used for the sample grids logged during training.
    """
    from ..sampling.generate import sample_tokens as _sample
    from ..sampling.processors import SamplingSettings

    settings = SamplingSettings(temperature=temperature, top_k=top_k or None, greedy=greedy)
    return _sample(model.transformer, c_indices, n_tokens, settings, generator=generator,
                   n_vocab=model.n_image_codes, fast=False)


# ============================================================================================ config
def resolve_config(cfg: TransformerRunConfig, first_stage: VQGAN | None, cond_stage: nn.Module | None
                   ) -> TransformerRunConfig:
    """Fill ``model.first_stage`` / ``model.cond.cond_stage`` from the loaded stage models."""
    from ..models.conditioning import make_condition

    m = cfg.model
    if first_stage is not None:
        m = dataclasses.replace(m, first_stage=first_stage.config)
    if cond_stage is not None:
        try:
            m = dataclasses.replace(m, cond=make_condition(m.cond).with_stage(cond_stage.config))
        except ValueError as e:
            raise VQForgeError(f"--cond-stage: {e}") from None
    return dataclasses.replace(cfg, model=m)


def _load_stage(path: str | None, what: str) -> VQGAN | None:
    if path is None:
        return None
    from ..api import load

    model = load(path)
    if isinstance(model, Net2NetTransformer):  # a transformer dir: take its stage
        model = model.first_stage if what == "first" else model.cond_stage
    if not isinstance(model, VQGAN):
        raise VQForgeError(f"{path}: not a VQGAN model (a {type(model).__name__})")
    return model


# ============================================================================================ the loop
def train(cfg: TransformerRunConfig, data: str | None, out: str | Path, first_stage: str | None = None,
          cond_stage: str | None = None, resume: bool = False, max_steps: int | None = None,
          progress: bool = True, stop_after: int | None = None) -> dict[str, float]:
    """Train (or resume) a transformer run in ``out``; returns the last validation metrics.

    ``max_steps`` overrides ``train.max_steps`` (the schedule's length); ``stop_after`` ends this call
    early after that many steps in total (as an interruption would), leaving a resumable checkpoint.
    """
    run = C.RunDir(out)
    if not resume and run.has_checkpoint():
        raise VQForgeError(f"{run.path}: already holds a run (checkpoints/last.pt); continue it with "
                           f"--resume {run.path} or choose another --out")
    dist = C.setup_distributed(cfg.train.device)
    ckpt = None
    if resume:
        ckpt = run.load_last()
        if ckpt.get("kind") != "transformer":
            raise VQForgeError(f"{run.last}: not a transformer checkpoint (kind {ckpt.get('kind')!r})")
        data = data or ckpt.get("data_spec")
        if not data:
            raise VQForgeError(f"{run.last}: the checkpoint does not name its data; pass --data")
        try:
            cfg = from_dict(TransformerRunConfig, {"model": ckpt["model_config"], "train": ckpt["train_config"]})
        except ConfigError as e:
            raise VQForgeError(f"{run.last}: {e}") from None
    if max_steps is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=max_steps))
    fs, cs = (None, None) if resume else (_load_stage(first_stage, "first"), _load_stage(cond_stage, "cond"))
    if not resume and fs is None:
        raise VQForgeError("--first-stage VQGAN_DIR is required for a new run")
    cfg = resolve_config(cfg, fs, cs)
    tc = cfg.train
    ds = TransformerData(data, cfg.model, tc)
    try:  # derived settings (vocab_size, block_size, n_classes, ...) and the image size the data has
        cfg = dataclasses.replace(cfg, model=derive_config(cfg.model, ds.facts))
    except ValueError as e:
        raise VQForgeError(f"{data}: {e}") from None
    C.seed_everything(tc.seed)  # the same initial weights on every rank
    model = Net2NetTransformer(cfg.model)
    if fs is not None:
        model.first_stage.load_state_dict(fs.state_dict())
    if cs is not None:
        model.cond_stage.load_state_dict(cs.state_dict())
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
    device = dist.device
    model.to(device)
    C.seed_everything(tc.seed + dist.rank)
    if ds.pre_tokenized and first_stage and dist.is_main:
        src = ds.train.meta.get("source_model") or ""
        if src and Path(src).resolve() != Path(first_stage).resolve():
            import warnings

            warnings.warn(f"{data}: tokens were encoded with {src}, but --first-stage is {first_stage}; "
                          f"make sure they are the same VQGAN", stacklevel=2)
    if tc.activation_checkpointing:
        enable_activation_checkpointing(model.transformer)
    lr = tc.learning_rate if tc.learning_rate > 0 else (
        C.scaled_lr(tc.base_learning_rate, tc.batch_size, tc.accumulate, dist.world_size) if tc.scale_lr
        else tc.base_learning_rate)
    opt = torch.optim.AdamW(param_groups(model.transformer, tc.weight_decay), lr=lr, betas=tuple(tc.betas))
    ema = C.EMA(model, tc.ema_decay) if tc.ema_decay > 0 else None
    ddp = C.wrap_ddp(model, dist)
    sampler = C.ResumableSampler(len(ds.train), seed=tc.seed, rank=dist.rank, world_size=dist.world_size,
                                 with_seeds=True)
    stream = C.BatchStream(ds.train, tc.batch_size, sampler, tc.workers, name=data)
    step = 0
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizers"]["transformer"])
        if ema is not None and ckpt.get("ema"):
            ema.load_state_dict(ckpt["ema"])
        stream.load_state_dict(ckpt["data"])
        step = int(ckpt["step"])
        rngs = ckpt.get("rng") or []
        if len(rngs) > dist.rank:
            C.set_rng_state(rngs[dist.rank])
    elif dist.is_main:
        run.write_config(cfg)
    logger = C.MetricLogger(run.path, enabled=dist.is_main, purge_step=step if ckpt is not None else None)
    in_ch = model.first_stage.config.ddconfig.in_channels
    metrics: dict[str, float] = {}

    def save(keep: bool = False) -> None:
        state = C.make_checkpoint("transformer", cfg.model, model, step, {"transformer": opt}, tc, ema=ema,
                                  rng=C.gather_rng_states(dist), data=stream.state_dict(),
                                  label_names=ds.label_names, data_spec=str(data))
        if dist.is_main:
            run.save_checkpoint(state, step, keep=keep)

    def fork_rng():
        # validation and sample grids must not move the training RNG (exact resume after an interruption)
        return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])

    def validate() -> dict[str, float]:
        if ds.val is None or len(ds.val) == 0:
            return {}
        with fork_rng():
            return _validate()

    def _validate() -> dict[str, float]:
        model.eval()
        total, count = 0.0, 0
        loader = torch.utils.data.DataLoader(ds.val, batch_size=tc.batch_size, shuffle=False)
        with torch.no_grad(), C.autocast(device, tc.bf16, tc.cpu_bf16):
            for i, batch in enumerate(loader):
                if i >= tc.val_batches:
                    break
                z, c = ds.to_tokens(model, batch, device)
                logits, target = model(z, c, pre_tokenized=True)
                total += float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                                               reduction="sum"))
                count += target.numel()
        model.train()
        from ..data.tokens import bits_per_dim

        loss = total / max(count, 1)
        return {"val/loss": loss, "val/bits_per_dim": bits_per_dim(loss, ds.grid, ds.image_size, in_ch)}

    def log_samples() -> None:
        if not dist.is_main or tc.n_samples <= 0:
            return
        with fork_rng():
            _log_samples()

    def _log_samples() -> None:
        model.eval()
        n = tc.n_samples
        batch = next(iter(torch.utils.data.DataLoader(ds.val if ds.val is not None else ds.train, batch_size=n)))
        z, c = ds.to_tokens(model, batch, device)
        c = model.condition.sample_tokens(c)
        idx = sample_tokens(model, c, z.shape[1], top_k=tc.sample_top_k)
        imgs = model.decode_to_img(idx, ds.grid)
        rows = [imgs, model.decode_to_img(z, ds.grid)]
        cond_img = model.condition.preview(c, ds.image_size, imgs.shape[1])
        if cond_img is not None:
            rows.append(cond_img)
        save_grid(run.images / f"samples_{step:07d}.png", torch.cat(rows).clamp(-1, 1), nrow=len(z))
        model.train()

    model.train()
    bar = C.progress_bar(tc.max_steps, initial=step, enabled=progress and dist.is_main, desc="train transformer")
    t0 = time.time()
    with C.StopRequest() as stop:
        while step < tc.max_steps:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, lr, tc.warmup_steps, tc.max_steps, tc.min_lr_ratio)
            opt.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for _ in range(tc.accumulate):
                z, c = ds.to_tokens(model, next(stream), device)
                with C.autocast(device, tc.bf16, tc.cpu_bf16):
                    logits, target = ddp(z, c, pre_tokenized=True)
                loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1))
                (loss / tc.accumulate).backward()
                loss_sum += loss.item() / tc.accumulate
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.transformer.parameters(), tc.grad_clip)
            opt.step()
            if ema is not None:
                ema.update(model)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.3f}")
            if step % tc.log_every == 0 or step == 1:
                logger.log(step, {"train/loss": loss_sum, "lr": opt.param_groups[0]["lr"],
                                  "train/steps_per_s": step / max(time.time() - t0, 1e-9)})
            if tc.val_every > 0 and step % tc.val_every == 0:
                metrics = validate()
                logger.log(step, metrics)
            if tc.sample_every > 0 and step % tc.sample_every == 0:
                log_samples()
            if tc.checkpoint_every > 0 and step % tc.checkpoint_every == 0:
                save(keep=tc.keep_every > 0 and step % tc.keep_every == 0)
            if stop.should_stop(dist) or (stop_after is not None and step >= stop_after):
                break
    bar.close()
    if not metrics or (tc.val_every > 0 and step % tc.val_every):
        metrics = validate()
        logger.log(step, metrics)
    save()
    logger.close()
    C.teardown_distributed(dist)
    return {**metrics, "step": step}


def load_run_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TransformerRunConfig:
    """A run config from a YAML file (``model`` and ``train`` sections) plus ``key=value`` overrides."""
    from ..config import apply_overrides, load_yaml

    try:
        cfg = load_yaml(TransformerRunConfig, path)
        return apply_overrides(cfg, list(overrides))
    except ConfigError as e:
        raise VQForgeError(str(e)) from None


__all__ = ["TransformerTrainConfig", "TransformerRunConfig", "TransformerData", "CoordCrops", "train", "sample_tokens",
           "param_groups", "lr_at", "load_run_config", "enable_activation_checkpointing"]
