"""Negative log-likelihood of tokens under a second-stage transformer (bits per dim), and which rows of a token
dataset are held out from the run that trained it (:func:`scored_rows`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..io import VQForgeError, read_yaml


@torch.inference_mode()
def token_nll(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
              image_hw: tuple[int, int] | None = None, channels: int = 3, total: int | None = None, progress: bool = True) -> dict:
    """Teacher-forced NLL of image tokens given their condition tokens.

    ``model``: a :class:`vqforge.models.transformer.Net2NetTransformer` (``forward_tokens(z, c) -> logits,
    targets``; run in eval mode, so no label dropout or token noise). ``batches`` yields ``(z, c)``: image
    tokens (B, N) and condition tokens (B, Tc). Returns ``nats_per_token``, ``bits_per_token``, and, with
    ``image_hw`` (pixel size), ``bits_per_dim``: total bits of an image's tokens over its ``channels``*H*W
    sub-pixels (as :func:`vqforge.data.tokens.bits_per_dim`) (the latent code's share of an image's description length; not a pixel likelihood).
    """
    from tqdm import tqdm

    model.eval()
    device = next(model.parameters()).device
    nats, tokens, images = 0.0, 0, 0
    with tqdm(total=total, desc="nll", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for z, c in batches:
            z, c = z.to(device).long(), c.to(device).long()
            logits, targets = model.forward_tokens(z, c)  # (B, N, V), (B, N)
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="sum")
            nats += float(nll)
            tokens += targets.numel()
            images += z.shape[0]
            bar.update(z.shape[0])
    if tokens == 0:
        raise ValueError("no tokens to evaluate")
    res = {"n_images": images, "n_tokens": tokens, "tokens_per_image": tokens // max(images, 1),
           "nats_per_token": nats / tokens, "bits_per_token": nats / tokens / math.log(2), "bits_per_dim": None,
           "image_hw": list(image_hw) if image_hw else None, "channels": channels}
    if image_hw is not None:
        res["bits_per_dim"] = nats / math.log(2) / (images * channels * image_hw[0] * image_hw[1])
    return res


def run_settings(model_path: str | Path) -> dict | None:
    """The ``train`` settings of the run that produced the model at ``model_path`` (a run directory or one of its
    checkpoints), read from the run's ``config.yaml``; None for a model directory or a file outside a run."""
    path = Path(model_path)
    run = path if path.is_dir() else path.parent.parent if path.parent.name == "checkpoints" else None
    if run is None or not (run / "config.yaml").is_file() or not (run / "checkpoints").is_dir():
        return None
    try:
        cfg = read_yaml(run / "config.yaml")
    except VQForgeError:
        return None
    train = cfg.get("train") if isinstance(cfg, dict) else None
    return train if isinstance(train, dict) else None


def _same_path(a: str | Path | None, b: str | Path) -> bool:
    return bool(a) and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def scored_rows(ds, data: str | Path, settings: dict | None, split: str = "auto") -> tuple[np.ndarray, str, str]:
    """Which rows of the token dataset ``ds`` (a :class:`~vqforge.data.tokens.TokenDataset` read from ``data``)
    to score, by the training run's ``settings`` (:func:`run_settings`): (row indices, split name, a sentence
    saying what they are to the model).

    ``split``: ``held-out`` (the rows the run validated on), ``train`` (the rows it trained on), ``all``, or
    ``auto`` (held-out when ``data`` is the run's training data with rows held out, else all). ValueError when
    the run record cannot answer the question asked.
    """
    from ..data.tokens import held_out_rows

    n = len(ds)
    everything = np.arange(n)
    settings = settings or {}
    if not settings.get("data"):
        if split in ("held-out", "train"):
            raise ValueError(f"--split {split}: the model has no training run record (RUN_DIR/config.yaml naming its "
                             f"data) to tell its rows apart; score --split all")
        return everything, "all", "all rows (no training run record says whether the model trained on them)"
    if _same_path(settings.get("val_data"), data):
        if split == "train":
            raise ValueError(f"--split train: {data} is the run's --val-data; the model trained on none of its rows")
        return everything, "held-out", "all rows: the run's --val-data, held out from training"
    if not _same_path(settings["data"], data):
        if split in ("held-out", "train"):
            raise ValueError(f"--split {split}: {data} is not the run's training data ({settings['data']})")
        return everything, "all", f"all rows: not the run's training data ({settings['data']})"
    if settings.get("val_data"):
        if split == "held-out":
            raise ValueError(f"--split held-out: the run trained on every row of {data} (it validated on "
                             f"{settings['val_data']}: score that)")
        return everything, "train", (f"training rows: the run trained on all of them (this measures fit, not "
                                     f"generalisation; its held-out data is {settings['val_data']})")
    val = held_out_rows(n, float(settings.get("val_fraction", 0.05)), int(settings.get("seed", 0)), ds.sources())
    train = np.setdiff1d(everything, val)
    if split == "all":
        return everything, "all", (f"all rows: {len(train)} the run trained on and {len(val)} it held out "
                                   f"(--split held-out|train scores them apart)")
    if split == "train":
        return train, "train", f"the {len(train)} rows the run trained on (this measures fit, not generalisation)"
    return val, "held-out", f"the {len(val)} rows the run held out for validation (--split train|all for the others)"


def evaluate_nll(model: str | Path, data: str | Path, *, split: str = "auto", limit: int | None = None,
                 batch_size: int = 32, device: str = "auto", progress: bool = True, trust: bool = False) -> dict:
    """``vqforge evaluate nll``: :func:`token_nll` of the token dataset ``data`` (``vqforge encode``) under the
    transformer at ``model`` (any name :func:`vqforge.api.load` takes), on the rows :func:`scored_rows` picks for
    ``split`` (at most ``limit``). A model that is not a transformer, tokens that do not fit it, or no rows to
    score is one :class:`VQForgeError`. Returns the JSON record (``rows`` says what was scored)."""
    from ..api import load
    from ..data.tokens import TokenDataset
    from ..devices import resolve_device
    from ..models.transformer import Net2NetTransformer, derive_config

    net = load(model, trust=trust)
    if not isinstance(net, Net2NetTransformer):
        raise VQForgeError(f"{model}: evaluate nll needs a transformer, this is a {type(net).__name__}")
    net = net.to(resolve_device(device)).eval()
    ds = TokenDataset(data)
    if ds.n_codes > net.n_image_codes:
        raise VQForgeError(f"{data}: tokens use {ds.n_codes} codes, the model's first stage has {net.n_image_codes}")
    try:  # the tokens hold what the model's condition needs, in its sizes
        derive_config(net.config, ds.facts())
    except ValueError as e:
        raise VQForgeError(f"{data}: the tokens do not fit this model: {e}") from None
    try:  # which rows, by the record of the run that trained the model
        rows, split, what = scored_rows(ds, data, run_settings(model), split)
    except ValueError as e:
        raise VQForgeError(f"{model}: {e}") from None
    rows = rows[:limit] if limit is not None else rows
    if not len(rows):
        raise VQForgeError(f"{data}: no rows to score ({what})")
    loader = torch.utils.data.DataLoader(TokenDataset(data, rows), batch_size=batch_size)
    batches = ((b["tokens"], net.condition.batch_tokens(b, "cpu")) for b in loader)
    res = token_nll(net, batches, image_hw=tuple(ds.meta["image_size"]),
                    channels=net.config.first_stage.ddconfig.in_channels, total=len(rows), progress=progress)
    return {"command": "evaluate nll", "model": str(model), "data": str(data), "split": split, "rows": what, **res}
