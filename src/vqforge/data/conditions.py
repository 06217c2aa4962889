"""Condition inputs for sampling (``vqforge sample`` / ``complete``): labels, condition files, defaults.

Each mode reads its own files (:meth:`~vqforge.models.conditioning.Condition.read_condition`); this module
finds them and reads them at the size of the images to sample, one model input per sample.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..io import VQForgeError


def condition_files(path: str | Path) -> list[Path]:
    """The condition files named by ``path``: one file (any suffix, e.g. ``.npy``) or the images under a folder."""
    from ..imageio import list_images

    files = [Path(path)] if Path(path).is_file() else list_images(path)
    if not files:
        raise VQForgeError(f"{path}: no condition files found")
    return files


def condition_inputs(condition, image_hw: tuple[int, int], labels: list[str] | None = None,
                     cond: str | Path | None = None) -> tuple[list[torch.Tensor | None], list[str | None]]:
    """Per-sample model inputs (1, ...) of a mode and where each came from (a file, or None).

    ``labels`` (``--class``, ids or names) for modes that take labels (without them: every label in turn);
    ``cond`` (``--cond``): a condition file or a folder of them, each read for images of ``image_hw`` (the
    trained size unless the user chose one); neither: ``[None]`` when the mode has a default input (start
    tokens, coordinates). Raises VQForgeError naming the file or what the model needs.
    """
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

