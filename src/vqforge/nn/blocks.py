"""Convolutional building blocks of the VQGAN encoder and decoder (the original's first-stage modules)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def Normalize(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups and eps 1e-6, as in the original."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def swish(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x) (SiLU)."""
    return F.silu(x)


class _Resample(nn.Module):
    """A 2x resampling with an optional 3x3 convolution (``conv``) of ``stride`` and ``padding``."""

    stride: int
    padding: int

    def __init__(self, channels: int, with_conv: bool = True):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=self.stride, padding=self.padding)


class Upsample(_Resample):
    """Nearest-neighbour 2x upsampling, optionally followed by a 3x3 convolution."""

    stride, padding = 1, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, 2H, 2W)
        return self.conv(x) if self.with_conv else x


class Downsample(_Resample):
    """2x downsampling: a strided 3x3 convolution with asymmetric padding, or average pooling."""

    stride, padding = 2, 0  # the padding is added in forward: right and bottom only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_conv:
            # NOTE: pad right/bottom only, as the original does (torch convs have no asymmetric padding).
            x = F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0)
            return self.conv(x)  # (B, C, H/2, W/2)
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class ResnetBlock(nn.Module):
    """GroupNorm-swish-conv twice, with a 1x1 (or 3x3) shortcut when the width changes."""

    def __init__(self, in_channels: int, out_channels: int | None = None, conv_shortcut: bool = False, dropout: float = 0.0):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.use_conv_shortcut = conv_shortcut
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        if in_channels != out_channels:
            if conv_shortcut:
                self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)
            else:
                self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.conv_shortcut(x) if self.use_conv_shortcut else self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over all H*W positions (1x1 convs for q, k, v, out)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = Normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x)
        q = self.q(h).flatten(2).transpose(1, 2)  # (B, HW, C)
        k = self.k(h).flatten(2).transpose(1, 2)  # (B, HW, C)
        v = self.v(h).flatten(2).transpose(1, 2)  # (B, HW, C)
        # softmax(q k^T / sqrt(C)) v, the original's scaling, through the fused kernel.
        h = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)  # (B, HW, C)
        h = h.transpose(1, 2).reshape(B, C, H, W)
        return x + self.proj_out(h)
