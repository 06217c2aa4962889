"""Pixel metrics for reconstructions: PSNR (from :mod:`vqforge.metrics`) and SSIM, per image."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped, float32."""
    return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR per image (B,) in dB for images (B, C, H, W), both clamped to [-1, 1] first (data range 2).

    Uses :func:`vqforge.metrics.psnr`; identical images give 120 dB (its MSE floor of 1e-12).
    """
    from ..metrics import psnr as _psnr

    return _psnr(x.float().clamp(-1, 1), y.float().clamp(-1, 1))


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2.0
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    return g / g.sum()  # (size,)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> torch.Tensor:
    """Structural similarity per image (B,) for images (B, C, H, W) in [-1, 1] (Wang et al. 2004).

    Gaussian window 11 with sigma 1.5, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with data range L = 1
    (images mapped to [0, 1]), 'valid' filtering, averaged over channels and positions. Images smaller
    than the window use a window as large as the image.
    """
    x, y = _to_unit(x), _to_unit(y)
    b, c, h, w = x.shape
    win = min(window, h, w)
    g = _gaussian_window(win, sigma, x.device, x.dtype)
    kh = g.view(1, 1, win, 1).expand(c, 1, win, 1)  # separable: vertical then horizontal, per channel
    kw = g.view(1, 1, 1, win).expand(c, 1, 1, win)

    def blur(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H-win+1, W-win+1)
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    c1, c2 = k1 ** 2, k2 ** 2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x ** 2
    syy = blur(y * y) - mu_y ** 2
    sxy = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)
