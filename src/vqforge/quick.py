"""One call from Python to images: :func:`sample` (``vqforge.sample``).

A thin front over the library's sampling path (:func:`~vqforge.sampling.pipeline.layout`, the conditions of
:mod:`vqforge.data.conditions` and :func:`~vqforge.sampling.pipeline.draw_batches`, as ``vqforge sample`` uses
them), taking the model card's sampling settings for those not given, and returning PIL images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .api import load, sampling_defaults
from .imageio import tensor_to_pil
from .io import VQForgeError
from .models.transformer import Net2NetTransformer
from .sampling.pipeline import draw_batches, layout
from .sampling.processors import SamplingSettings


def sample(model: Net2NetTransformer | str | Path, n: int = 1, class_: int | str | Sequence[int | str] | None = None,
           cond: Any = None, size: int | tuple[int, int] | None = None, seed: int = 0, *,
           top_k: int | None = None, top_p: float | None = None, temperature: float | None = None,
           cfg: float | None = None, window: tuple[int, int] | None = None, batch_size: int = 8) -> list:
    """``n`` images (PIL) drawn from a transformer model.

    ``model``: a loaded :class:`~vqforge.models.transformer.Net2NetTransformer` (``vqforge.load(...)``) or what
    :func:`vqforge.load` takes (``"fashion"``, a model or run directory). ``class_``: a class id or name, or a list
    of them used in turn (class-conditional models; default: every class in turn). ``cond``: the condition of a
    spatial model: a file or folder of files (as ``vqforge sample --cond``), or a map in memory (a PIL image, or an
    (H, W) array/tensor of label ids), used in turn. ``size``: output (H, W) or one side, pixels (default: the
    trained size; maps are resized to it; larger slides the window). ``seed``: the images are a function of it.
    ``top_k`` / ``top_p`` / ``temperature`` / ``cfg``: default the model card's
    (:func:`vqforge.api.sampling_defaults`), as on the command line and in the web app.
    Errors are :class:`~vqforge.io.VQForgeError` with one line.
    """
    net = model if isinstance(model, torch.nn.Module) else load(model)
    if not isinstance(net, Net2NetTransformer):
        raise VQForgeError(f"vqforge.sample needs a transformer model, this is a {type(net).__name__}")
    if n < 1 or batch_size < 1:
        raise VQForgeError(f"n and batch_size must be >= 1, got {n} and {batch_size}")
    d = {**sampling_defaults(getattr(net, "card", None) or {}),
         **{k: v for k, v in dict(top_k=top_k, top_p=top_p, temperature=temperature, cfg=cfg).items() if v is not None}}
    hw = (size, size) if isinstance(size, int) else tuple(size) if size is not None else None
    try:
        settings = SamplingSettings(temperature=d["temperature"], top_k=int(d["top_k"]) or None, top_p=d["top_p"],
                                    cfg_scale=d["cfg"])
        lay = layout(net, hw, window, cfg_scale=settings.cfg_scale)
        inputs = _inputs(net, lay.image_hw, class_, cond)
        device = net.transformer.pos_emb.device
        generator = torch.Generator(device=device).manual_seed(seed)
        images = []
        for _, x in draw_batches(net, lay, inputs, n, batch_size, settings, generator):
            images += [tensor_to_pil(im) for im in x]
    except ValueError as e:
        raise VQForgeError(str(e).splitlines()[0]) from None
    return images


def _inputs(net: Net2NetTransformer, image_hw: tuple[int, int], class_, cond) -> list[torch.Tensor | None]:
    """Per-image model inputs (1, ...): classes and condition files as the command line reads them
    (:func:`vqforge.data.conditions.condition_inputs`), maps in memory through the mode's own map reader."""
    from PIL import Image

    from .data.conditions import condition_inputs

    classes = None if class_ is None else [str(c) for c in (class_ if isinstance(class_, (list, tuple)) else [class_])]
    if cond is None or isinstance(cond, (str, Path)):
        return condition_inputs(net.condition, image_hw, classes, cond)[0]
    maps = cond if isinstance(cond, (list, tuple)) else [cond]
    if not hasattr(net.condition, "condition_from_map"):
        raise VQForgeError(f"cond: this model's condition ({net.condition.name}) takes no maps")
    out = []
    for m in maps:
        if isinstance(m, torch.Tensor):
            m = m.detach().cpu().numpy()
        if isinstance(m, np.ndarray):  # label ids (integers) as an L or I image, anything else (depth) as F
            if not np.issubdtype(m.dtype, np.integer):
                m = Image.fromarray(m.astype(np.float32), mode="F")
            else:
                m = Image.fromarray(m.astype(np.uint8 if 0 <= m.min(initial=0) and m.max(initial=0) < 256
                                             else np.int32))
        out.append(net.condition.condition_from_map(m, image_hw, "cond")[0])
    return out
