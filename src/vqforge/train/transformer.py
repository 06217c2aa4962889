"""Training the second stage: a GPT over frozen first-stage tokens (``vqforge train transformer``).

The run config has two sections: ``model`` (:class:`TransformerConfig`; its ``first_stage`` and the
condition's ``cond_stage`` are taken from the ``--first-stage`` / ``--cond-stage`` model directories) and
``train`` (:class:`TransformerSettings`: the shared settings vocabulary plus the transformer's own).
Data (``--data``, see :class:`~vqforge.train.transformer_data.TransformerData`) is one of

* a token dataset written by ``vqforge encode`` (``meta.json`` + ``.npy``; read directly, no encoding);
  ``--val-data`` may name a second, held-out token dataset (else ``val_fraction`` of ``--data`` is held out);
* ``fashion-mnist`` (Debian's ``dataset-fashion-mnist``; labels are its 10 classes; val = the first 2000
  images of its test split);
* images (folder, file list or glob; class labels from ImageFolder sub-folder names), encoded on the fly
  from random crops.

The step follows the original: cross-entropy over image tokens, ``pkeep`` token noise, AdamW with betas
(0.9, 0.95) and weight decay on Linear weights only (not biases, LayerNorm, embeddings or ``pos_emb``), plus
what the original lacks: linear warmup + cosine decay, NULL-class label dropout for classifier-free
guidance, bf16 autocast, optional activation checkpointing. The loop (:mod:`vqforge.train.loop`) adds
validation loss on held-out tokens as training goes (``val/loss``, ``val/bits_per_dim``), ``best.pt`` by
validation loss with a warning when it keeps rising (overfitting), DDP, exact resume and sample grids.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..imageio import save_grid
from ..io import VQForgeError
from ..models.transformer import Net2NetTransformer, TransformerConfig, derive_config
from ..models.vqgan import VQGAN
from . import loop
from .checkpoint import Checkpoint
from .numerics import adam
from .settings import renamed_names
from .transformer_config import OLD, TransformerRunConfig, TransformerSettings, load_config
from .transformer_data import CoordCrops, TransformerData


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
    for block in gpt.blocks:
        block.checkpoint = True


# ============================================================================================ sampling
@torch.no_grad()
def sample_tokens(model: Net2NetTransformer, c_indices: torch.Tensor, n_tokens: int, top_k: int | None = 100,
                  temperature: float = 1.0, greedy: bool = False, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """Image tokens (B, n_tokens) sampled after the condition tokens ``c_indices`` (B, Tc).

    A thin wrapper over :func:`vqforge.sampling.generate.sample_tokens` (exact fp32 path) with logits
    restricted to the image codebook, used for the sample grids logged during training.
    """
    from ..sampling.defaults import settings_for
    from ..sampling.generate import EXACT
    from ..sampling.generate import sample_tokens as _sample

    settings = settings_for({}, top_k=top_k or 0, temperature=temperature, cfg=0.0, greedy=greedy)
    return _sample(model.transformer, c_indices, n_tokens, settings, generator=generator,
                   n_vocab=model.n_image_codes, decoding=EXACT)


def _preview_samples(model: Net2NetTransformer, cond: torch.Tensor, ds: TransformerData, top_k: int | None
                     ) -> torch.Tensor:
    """Images (B, C, H, W) for the sample grids: the sampling job on the condition tokens ``cond`` (B, Tc) of a
    validation batch, at the data's size in one window, on the exact path and torch's global generator."""
    from ..sampling.generate import EXACT
    from ..sampling.job import run_job
    from ..sampling.request import SampleRequest

    request = SampleRequest(model, cond_tokens=cond, size=tuple(ds.image_size), window=tuple(ds.grid), top_k=top_k,
                            temperature=1.0, cfg=0.0, seed=None, batch_size=len(cond), decoding=EXACT)
    return run_job(request).images


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


def init_gpt(model: Net2NetTransformer, source: str) -> None:
    """Copy the GPT weights of the transformer model at ``source`` (see ``TransformerSettings.init_from``) into
    ``model``'s GPT; another kind of model, or a GPT of another shape, is one error naming ``source``."""
    from ..api import load

    src = load(source)
    if not isinstance(src, Net2NetTransformer):
        raise VQForgeError(f"{source}: train.init_from is not a transformer model (a {type(src).__name__})")
    try:
        model.transformer.load_state_dict(src.transformer.state_dict())
    except RuntimeError:
        raise VQForgeError(f"{source}: train.init_from has another GPT than this run's model "
                           f"(vocabulary, block size, layers or width differ)") from None


# ============================================================================================ the stage
class TransformerStage(loop.Stage):
    """The transformer's part of the loop: the GPT over frozen stages, AdamW, cross-entropy on image tokens."""

    trainer, kind, title, preview_name = "transformer", "transformer", "train transformer", "samples"
    best_metric = ("val/loss", "min")
    shown = ("val/loss", "val/bits_per_dim")

    def __init__(self, cfg: TransformerRunConfig, first_stage: VQGAN | None = None, cond_stage: VQGAN | None = None,
                 first_stage_path: str | None = None):
        self.cfg, self.first_stage, self.cond_stage = cfg, first_stage, cond_stage
        self.first_stage_path = first_stage_path

    def build(self, ctx: loop.Context, ckpt: Checkpoint | None) -> None:
        cfg, s = self.cfg, self.cfg.train
        self.data = TransformerData(s.data, cfg.model, s)
        if s.val_data:
            self._separate_validation(s, cfg.model)
        try:  # derived settings (vocab_size, block_size, n_classes, ...) and the image size the data has
            model_cfg = derive_config(cfg.model, self.data.facts)
            model = Net2NetTransformer(model_cfg)
        except ValueError as e:
            raise VQForgeError(f"{s.data}: {e}") from None
        if self.first_stage is not None:
            model.first_stage.load_state_dict(self.first_stage.state_dict())
        if self.cond_stage is not None:
            model.cond_stage.load_state_dict(self.cond_stage.state_dict())
        if s.init_from and ckpt is None:
            init_gpt(model, s.init_from)
        self.model = model.to(ctx.device)
        if self.data.pre_tokenized and self.first_stage_path and ctx.dist.is_main:
            src = (getattr(self.data.train, "meta", None) or {}).get("source_model") or ""  # shards: no meta
            if src and Path(src).resolve() != Path(self.first_stage_path).resolve():
                warnings.warn(f"{s.data}: tokens were encoded with {src}, but --first-stage is "
                              f"{self.first_stage_path}; make sure they are the same VQGAN", stacklevel=2)
        if s.activation_checkpointing:
            enable_activation_checkpointing(model.transformer)
        self.train_data = self.data.train
        opt = adam(param_groups(model.transformer, s.weight_decay), ctx.lr, s.betas, decoupled=True)
        self.optimizers = {"transformer": (opt, [p for p in model.transformer.parameters() if p.requires_grad])}
        self.label_names = self.data.label_names

    def _separate_validation(self, s: TransformerSettings, model_cfg: TransformerConfig) -> None:
        """``--val-data``: a held-out token dataset validates; all of ``--data`` trains."""
        from ..data import tokens as T

        if not (T.is_token_dir(s.data) and T.is_token_dir(s.val_data)):
            raise VQForgeError(f"{s.val_data}: --val-data needs token datasets from `vqforge encode` for both "
                               f"--data and --val-data")
        val = T.TokenDataset(s.val_data)
        if val.n_codes != model_cfg.first_stage.quantizer.n_codes or tuple(val.grid) != tuple(self.data.grid):
            raise VQForgeError(f"{s.val_data}: {val.grid[0]}x{val.grid[1]} tokens of {val.n_codes} codes, but "
                               f"{s.data} has {self.data.grid[0]}x{self.data.grid[1]} of "
                               f"{model_cfg.first_stage.quantizer.n_codes}")
        self.data.train, self.data.val = T.TokenDataset(s.data), val

    def finalize_config(self, cfg: TransformerRunConfig) -> TransformerRunConfig:
        return dataclasses.replace(cfg, model=self.model.config)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"label_names": self.label_names, "data_spec": self.cfg.train.data}

    def train_step(self, ctx: loop.Context, step: int) -> loop.StepOutput:
        s = ctx.settings
        for g in self.optimizers["transformer"][0].param_groups:
            g["lr"] = lr_at(step, ctx.lr, s.warmup_steps, s.max_steps, s.min_lr_ratio)
        total = torch.zeros((), device=ctx.device)
        for i in range(s.accumulation):
            z, c = self.data.to_tokens(self.model, ctx.next_batch(), ctx.device)
            sync = i == s.accumulation - 1 or not ctx.dist.distributed
            with contextlib.nullcontext() if sync else ctx.ddp_model.no_sync():
                with ctx.autocast():
                    logits, target = ctx.ddp_model(z, c, pre_tokenized=True)
                loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1))
                (loss / s.accumulation).backward()
            total += loss.detach() / s.accumulation
        return loop.StepOutput({"loss": total}, {"train/loss": total})

    @torch.no_grad()
    def validate(self, ctx: loop.Context, model: nn.Module) -> dict[str, float]:
        from ..data.tokens import bits_per_dim

        ds = self.data
        if ds.val is None or len(ds.val) == 0:
            return {}
        model.eval()
        total, count = 0.0, 0
        loader = torch.utils.data.DataLoader(ds.val, batch_size=ctx.settings.batch_size, shuffle=False)
        for i, batch in enumerate(loader):
            if i >= ctx.settings.val_batches:
                break
            z, c = ds.to_tokens(model, batch, ctx.device)
            logits, target = model(z, c, pre_tokenized=True)
            total += float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                                           reduction="sum"))
            count += target.numel()
        loss = total / max(count, 1)
        in_ch = model.first_stage.config.ddconfig.in_channels
        return {"val/loss": loss, "val/bits_per_dim": bits_per_dim(loss, ds.grid, ds.image_size, in_ch)}

    @torch.no_grad()
    def preview(self, ctx: loop.Context, step: int, path: Path) -> None:
        s, ds, model = ctx.settings, self.data, self.model
        if s.n_samples <= 0:
            return
        model.eval()
        batch = next(iter(torch.utils.data.DataLoader(ds.val if ds.val is not None else ds.train,
                                                      batch_size=s.n_samples)))
        z, c = ds.to_tokens(model, batch, ctx.device)
        c = model.condition.sample_tokens(c)
        imgs = _preview_samples(model, c, ds, s.sample_top_k).to(z.device)
        rows = [imgs, model.decode_to_img(z, ds.grid)]
        cond_img = model.condition.preview(c, ds.image_size, imgs.shape[1])
        if cond_img is not None:
            rows.append(cond_img)
        save_grid(path, torch.cat(rows).clamp(-1, 1), nrow=len(z))

    def next_steps(self, run: Path) -> list[str]:
        return [f"vqforge sample --model {run} --num 16 --out samples/",
                # the tokens it trained on: evaluate nll scores their held-out rows (README: --data tokens/)
                f"vqforge evaluate nll --model {run} --data {self.cfg.train.data}"]


# ============================================================================================ entry points
def train_transformer(cfg: TransformerRunConfig | None, data: str | None, out: str | Path,
                      first_stage: str | None = None, cond_stage: str | None = None, resume: bool = False,
                      overrides: list[str] | tuple[str, ...] = (), settings: dict[str, Any] | None = None,
                      **options: Any) -> loop.RunResult:
    """Train (or resume) a transformer run in ``out``.

    ``data`` (when given) sets ``train.data``. A new run needs ``first_stage`` (a VQGAN model or run
    directory; ``cond_stage`` for spatial conditions). ``cfg`` None with ``resume``: the run's own config;
    ``overrides`` / ``settings`` change it (see :func:`vqforge.train.loop.configure`). ``options``:
    :class:`~vqforge.train.loop.RunOptions` fields (``max_steps``, ``stop_after``, ``time_limit``, ``quiet``,
    ``json``).
    """
    run, ckpt = loop.resume_checkpoint(out, resume, "transformer")
    settings = dict(settings or {}, **({"data": str(data)} if data else {}))
    cfg = loop.configure(cfg, ckpt, TransformerRunConfig, OLD, run.last, overrides, settings)
    if ckpt is not None and not cfg.train.data:  # NOTE: runs written before train.data existed
        spec = ckpt.extra.get("data_spec")
        if not spec:
            raise VQForgeError(f"{run.last}: the checkpoint does not name its data; pass --data")
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, data=str(spec)))
    fs = cs = None
    if ckpt is None:
        fs, cs = _load_stage(first_stage, "first"), _load_stage(cond_stage, "cond")
        if fs is None:
            raise VQForgeError("--first-stage VQGAN_DIR is required for a new run")
        cfg = resolve_config(cfg, fs, cs)
    return loop.run(TransformerStage(cfg, fs, cs, first_stage), cfg, run, ckpt, loop.RunOptions(**options))


__all__ = ["TransformerSettings", "TransformerRunConfig", "TransformerData", "CoordCrops", "TransformerStage",
           "train_transformer", "sample_tokens", "param_groups", "lr_at", "load_config", "init_gpt",
           "enable_activation_checkpointing"]

#: the names before the one vocabulary: one release more, with a DeprecationWarning
__getattr__ = renamed_names(__name__, globals(), {"TransformerTrainConfig": "TransformerSettings",
                                                  "load_run_config": "load_config", "train": "train_transformer"})
