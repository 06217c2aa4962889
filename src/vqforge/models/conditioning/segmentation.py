"""Segmentation maps (label ids per pixel) through a segmentation condition stage (the paper's S-FLCKR)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .base import KEY, StageTraining
from .spatial import StageCondition, StageConfig


@dataclass(frozen=True)
class SegmentationConfig(StageConfig):
    """n_labels: the label count (0: the condition stage's input channels)."""

    mode: ClassVar[str] = "segmentation"
    n_labels: int = 0


def one_hot_labels(labels: torch.Tensor, n_labels: int) -> torch.Tensor:
    """Label maps (B, H, W) int -> one-hot float maps (B, n_labels, H, W) in {0, 1}."""
    if labels.dim() == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.min() < 0 or labels.max() >= n_labels:
        raise ValueError(f"label ids must lie in [0, {n_labels}), got [{int(labels.min())}, {int(labels.max())}]")
    return F.one_hot(labels.long(), n_labels).permute(0, 3, 1, 2).float()  # (B, n_labels, H, W)


def label_palette(n_labels: int, seed: int = 0) -> torch.Tensor:
    """A fixed colour per label, (n_labels, 3) in [0, 1] (for logs; the original uses a random projection)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n_labels, 3, generator=g) * 0.8 + 0.2


def colorize_labels(labels: torch.Tensor, n_labels: int) -> torch.Tensor:
    """Label maps (B, H, W) or one-hot/logit maps (B, n_labels, H, W) -> RGB images (B, 3, H, W) in [-1, 1]."""
    if labels.dim() == 4:
        labels = labels.argmax(1)
    rgb = label_palette(n_labels).to(labels.device)[labels.long()]  # (B, H, W, 3)
    return rgb.permute(0, 3, 1, 2) * 2 - 1


class Segmentation(StageCondition):
    """Model input: one-hot maps (B, n_labels, H, W); raw data: label maps (B, H, W) int.
    Condition files: one-channel PNGs of label ids."""

    Config = SegmentationConfig
    raw_input = "map"
    input_hint = "segmentation maps (--cond, one-channel PNGs of label ids)"
    map_resample = "nearest"
    # NOTE: "seg": the preview name segmentation runs wrote before there were other kinds of condition stage
    stage_training = StageTraining(logits=True, label_ids=True, preview_name="seg")

    @classmethod
    def takes_stage(cls, in_channels: int) -> bool:
        return in_channels not in (1, 3)

    @property
    def n_labels(self) -> int:
        return self.config.n_labels or self.config.cond_stage.ddconfig.in_channels

    def expected_channels(self) -> int:
        return self.n_labels

    def build_input(self, images=None, raw=None) -> torch.Tensor:
        if raw is None:
            raise ValueError("segmentation conditioning needs label maps (B, H, W)")
        if raw.dim() == 4 and raw.shape[1] == self.n_labels and raw.dtype.is_floating_point:
            return raw  # already one-hot
        return one_hot_labels(raw, self.n_labels)

    def displayable(self, rec: torch.Tensor) -> torch.Tensor:
        return colorize_labels(rec, self.n_labels)

    def read_map(self, path):
        from ...imageio import read_image
        from ...io import VQForgeError

        im = read_image(path, mode=None)
        if im.mode not in ("L", "P", "I", "I;16"):
            raise VQForgeError(f"{path}: a segmentation map is a one-channel PNG of label ids, got mode {im.mode}")
        return im

    def raw_from_map(self, img, path="") -> torch.Tensor:
        from ...io import VQForgeError

        labels = torch.from_numpy(np.asarray(img).astype(np.int64))  # (H, W)
        n = self.n_labels
        if labels.numel() and (labels.max() >= n or labels.min() < 0):
            raise VQForgeError(f"{path}: label ids must lie in [0, {n}), found {int(labels.max())}")
        return labels

    def stage_metrics(self, rec, x):
        return {"val/pixel_accuracy": (rec.argmax(1) == x.argmax(1)).float().mean().item()}

    def problems(self) -> list[str]:
        out = super().problems()
        if self.config.n_labels < 0:
            out.append(f"{KEY}.n_labels must be >= 1 (0: the condition stage's input channels)")
        return out
