"""Depth maps through a one-channel depth condition stage (the paper's D-RIN)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ...metrics import psnr
from .base import StageTraining
from .spatial import StageCondition, StageConfig


@dataclass(frozen=True)
class DepthConfig(StageConfig):
    """Depth conditioning has only the condition-stage settings."""

    mode: ClassVar[str] = "depth"


def normalize_depth(depth: torch.Tensor) -> torch.Tensor:
    """Per-image min/max normalisation of depth (B, [1,] H, W) to [-1, 1] (the original D-RIN recipe)."""
    if depth.dim() == 3:
        depth = depth[:, None]
    flat = depth.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1, 1)
    hi = flat.max(1).values.view(-1, 1, 1, 1)
    return (depth - lo) / (hi - lo).clamp_min(1e-8) * 2 - 1


def read_depth(path) -> np.ndarray:
    """A depth map (H, W) float32 from the D-RIN float32-in-RGBA PNG, a ``.npy`` array or a grayscale image."""
    from ...imageio import read_image
    from ...io import VQForgeError

    if Path(path).suffix == ".npy":
        try:
            depth = np.load(path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as e:
            raise VQForgeError(f"{path}: not a readable .npy depth map ({e})") from None
    else:
        im = read_image(path, mode=None)
        arr = np.asarray(im)
        # RGBA: the D-RIN layout, 4 bytes per pixel = one float32
        depth = arr.copy().view(np.float32)[..., 0] if im.mode == "RGBA" else arr.astype(np.float32)
    if depth.ndim != 2:
        raise VQForgeError(f"{path}: a depth map has one channel, got shape {tuple(depth.shape)}")
    if not np.isfinite(depth).all():
        raise VQForgeError(f"{path}: the depth map holds non-finite values")
    return depth


class Depth(StageCondition):
    """Model input: depth (B, 1, H, W) in [-1, 1]; raw data: depth of any range (normalised per image).
    Condition files: the D-RIN float32-in-RGBA PNG, a ``.npy`` array or a grayscale PNG."""

    Config = DepthConfig
    raw_input = "map"
    input_hint = "depth maps (--cond)"
    stage_channels = 1
    map_resample = "bilinear"
    stage_training = StageTraining()  # L1 on depth normalised per crop to [-1, 1]

    def build_input(self, images=None, raw=None) -> torch.Tensor:
        if raw is None:
            raise ValueError("depth conditioning needs depth maps (B, 1, H, W)")
        return normalize_depth(raw.float())

    def stage_metrics(self, rec, x):
        rec = rec.clamp(-1, 1)
        return {"val/l1": (rec - x).abs().mean().item(), "val/psnr": psnr(rec, x).mean().item()}

    def read_map(self, path):
        from PIL import Image

        return Image.fromarray(read_depth(path), mode="F")

    def raw_from_map(self, img, path="") -> torch.Tensor:
        return torch.from_numpy(np.array(img, dtype=np.float32))[None]  # (1, H, W)
