"""What a condition stage learns to reconstruct: one :class:`MapKind` per kind of map, registered by name.

A condition stage is a VQGAN over condition maps (the original's ``VQSegmentationModel`` and the depth
stage of D-RIN); the transformer later conditions on its codes. A kind supplies its files, its dataset,
the model input it makes from a batch (the ``build_input`` of the transformer's conditioning mode, so the
stage sees what it will encode), its reconstruction loss, its
validation metrics and a preview picture. Adding a kind = one file with a subclass + ``@register``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...data.images import FileDataset, find_images
from ...io import VQForgeError

KINDS: dict[str, "MapKind"] = {}


def register(cls: type["MapKind"]) -> type["MapKind"]:
    """Class decorator: make a map kind available by its ``name``."""
    KINDS[cls.name] = cls()
    return cls


def map_kind(name: str) -> "MapKind":
    """The registered kind called ``name`` (one-line error naming the known ones)."""
    if name not in KINDS:
        raise VQForgeError(f"condition stage mode {name!r}: choose one of {', '.join(sorted(KINDS))}")
    return KINDS[name]


class MapKind:
    """One kind of condition map (see the module doc). Tensors: maps (B, C, H, W) as the model takes them."""

    name = ""
    #: previews are written as ``images/<preview_name>_NNNNNNN.png`` (default: the kind's name)
    preview_name = ""
    #: the decoder's outputs are logits of {0, 1} targets (``x > 0``): its output bias can start at the
    #: training maps' log-odds (``train.init_bias_from_data``)
    logits_output = False

    def channels(self, n_labels: int) -> int:
        """The VQGAN's input and output channels."""
        raise NotImplementedError

    def files(self, data: str) -> list[Path]:
        """The files that ``--data`` names."""
        return find_images(data)

    def dataset(self, files: list[Path], settings: Any, train: bool, n_labels: int) -> FileDataset:
        raise NotImplementedError

    def condition(self, batch: dict[str, Any], device: torch.device, n_labels: int) -> torch.Tensor:
        """The model input (B, C, H, W) of a batch."""
        raise NotImplementedError

    def loss(self, rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction loss of the decoder's output ``rec`` (fp32) against the input ``x``."""
        raise NotImplementedError

    def metrics(self, rec: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
        """Validation metrics of one batch (means over the batch, combined weighted by batch size)."""
        return {}

    def to_rgb(self, maps: torch.Tensor, n_labels: int) -> torch.Tensor:
        """Inputs or reconstructions as pictures (B, 3, H, W) in [-1, 1]."""
        raise NotImplementedError
