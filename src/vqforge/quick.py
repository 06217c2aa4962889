"""One call from Python to images: :func:`sample` (``vqforge.sample``).

A thin front over the sampling job (:func:`vqforge.sampling.job.run_job`, as ``vqforge sample`` runs it): one
:class:`~vqforge.sampling.request.SampleRequest` with the same defaults (the model card's sampling settings, the
trained size, a batch that fits the memory budget), returning PIL images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from .api import load
from .imageio import tensor_to_pil
from .io import VQForgeError
from .memory import Budget
from .models.transformer import Net2NetTransformer
from .sampling.job import run_job
from .sampling.request import SampleRequest


def sample(model: Net2NetTransformer | str | Path, n: int = 1, class_: int | str | Sequence[int | str] | None = None,
           cond: Any = None, size: int | tuple[int, int] | None = None, seed: int = 0, *,
           top_k: int | None = None, top_p: float | None = None, temperature: float | None = None,
           cfg: float | None = None, window: tuple[int, int] | None = None, batch_size: int | None = None,
           max_memory: str | int | None = None) -> list:
    """``n`` images (PIL) drawn from a transformer model.

    ``model``: a loaded :class:`~vqforge.models.transformer.Net2NetTransformer` (``vqforge.load(...)``) or what
    :func:`vqforge.load` takes (``"fashion"``, a model or run directory). ``class_``: a class id or name, or a list
    of them used in turn (class-conditional models; default: every class in turn). ``cond``: the condition of a
    spatial model: a file or folder of files (as ``vqforge sample --cond``), or a map in memory (a PIL image, or an
    (H, W) array/tensor of label ids), used in turn. ``size``: output (H, W) or one side, pixels (default: the
    trained size; maps are resized to it; larger slides the window). ``seed``: the images are a function of it
    (and of ``batch_size``: None picks it as ``vqforge sample --batch-size auto`` does, so that the command line
    with the same seed writes the same images). ``top_k`` / ``top_p`` / ``temperature`` / ``cfg``: default the
    model card's (:func:`vqforge.api.sampling_defaults`), as on the command line and in the web app.
    ``max_memory``: the job's memory budget (bytes, or text such as ``"4GiB"``; default half the memory available,
    as ``--max-memory``): a job over it is refused naming the largest size that fits, or decoded in tiles.
    Errors are :class:`~vqforge.io.VQForgeError` with one line.
    """
    net = model if isinstance(model, torch.nn.Module) else load(model)
    if not isinstance(net, Net2NetTransformer):
        raise VQForgeError(f"vqforge.sample needs a transformer model, this is a {type(net).__name__}")
    if n < 1 or (batch_size is not None and batch_size < 1):
        raise VQForgeError(f"n and batch_size must be >= 1, got {n} and {batch_size}")
    device = net.transformer.pos_emb.device
    if isinstance(max_memory, int) and not isinstance(max_memory, bool):
        budget = Budget(max_memory, f"max_memory={max_memory}")
    else:
        budget = Budget.from_option(max_memory, device, "max_memory")
    classes = None if class_ is None else tuple(str(c) for c in (class_ if isinstance(class_, (list, tuple))
                                                                 else [class_]))
    hw = (size, size) if isinstance(size, int) else tuple(size) if size is not None else None
    request = SampleRequest(net, count=n, classes=classes, cond=cond, size=hw, window=window, top_k=top_k,
                            top_p=top_p, temperature=temperature, cfg=cfg, seed=seed, batch_size=batch_size,
                            budget=budget)
    return [tensor_to_pil(im) for im in run_job(request).images]
