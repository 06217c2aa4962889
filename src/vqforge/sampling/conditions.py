"""Condition inputs of a sampling job: labels, condition files, maps in memory, the mode's default.

Each mode reads its own files (:meth:`~vqforge.models.conditioning.Condition.read_condition`) and maps
(``condition_from_map``); this module finds them and reads them at the size of the images to sample, one model
input per sample (the job cycles through them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import VQForgeError


def condition_files(path: str | Path) -> list[Path]:
    """The condition files named by ``path``: one file (any suffix, e.g. ``.npy``) or the images under a folder."""
    from ..imageio import list_images

    files = [Path(path)] if Path(path).is_file() else list_images(path)
    if not files:
        raise VQForgeError(f"{path}: no condition files found")
    return files


def is_in_memory(cond: Any) -> bool:
    """Whether ``cond`` holds maps in memory (a PIL image, an array or tensor, or a list of them), not a path."""
    return cond is not None and not isinstance(cond, (str, Path))


def condition_inputs(condition, image_hw: tuple[int, int], labels: list[str] | None = None,
                     cond: Any = None) -> tuple[list[torch.Tensor | None], list[str | None]]:
    """Per-sample model inputs (1, ...) of a mode and where each came from (a file, or None).

    ``labels`` (``--class``, ids or names) for modes that take labels (without them: every label in turn);
    ``cond`` (``--cond``): a condition file or a folder of them, each read for images of ``image_hw`` (the
    trained size unless the user chose one), or maps in memory (:func:`maps_inputs`); neither: ``[None]`` when
    the mode has a default input (start tokens, coordinates). Raises VQForgeError naming the file or what the
    model needs.
    """
    if is_in_memory(cond):
        maps = maps_inputs(condition, image_hw, cond)
        return maps, [None] * len(maps)
    try:
        per_label = condition.label_inputs(labels)
    except ValueError as e:
        raise VQForgeError(str(e)) from None
    if per_label is not None:
        if cond:
            raise VQForgeError(f"{cond}: --cond is for spatial models; give class labels with --class")
        return per_label, [None] * len(per_label)
    if cond:
        files = condition_files(cond)
        return [condition.read_condition(f, image_hw)[0] for f in files], [str(f) for f in files]
    if condition.default_input(1, image_hw) is None:
        raise VQForgeError(f"this model is conditioned on {condition.input_hint}; give them with --cond FILE_OR_DIR")
    return [None], [None]


def maps_inputs(condition, image_hw: tuple[int, int], cond: Any) -> list[torch.Tensor]:
    """Model inputs (1, ...) of maps in memory: a PIL image or an (H, W) array / tensor (label ids as integers,
    anything else, e.g. depth, as floats), or a list of them, through the mode's own map reader."""
    from PIL import Image

    maps = cond if isinstance(cond, (list, tuple)) else [cond]
    if not hasattr(condition, "condition_from_map"):
        raise VQForgeError(f"cond: this model's condition ({condition.name}) takes no maps")
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
        out.append(condition.condition_from_map(m, image_hw, "cond")[0])
    return out
