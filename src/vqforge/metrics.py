"""Image quality metrics in plain torch: PSNR and SSIM (gaussian window), per image.

Inputs are batches (B, C, H, W) in [-1, 1] (vqforge's image range); both functions return a (B,) tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: ``10 log10(range^2 / MSE)``, x, y (B, C, H, W) -> (B,)."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)  # (B,)
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    w = g[:, None] * g[None, :]  # (size, size)
    return w.expand(channels, 1, size, size).contiguous()  # depthwise (C, 1, k, k)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, window_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity per image (B,), the standard gaussian-window SSIM (Wang et al. 2004).

    ``x``, ``y`` are in [-1, 1] (``data_range`` 2); they are evaluated as intensities in [0, 1].

    11x11 gaussian window, sigma 1.5, valid convolution, averaged over channels and positions. Images smaller
    than the window use a window as large as the smaller side.
    """
    # NOTE: SSIM's luminance term depends on where zero is: the standard recipe works on intensities in
    # [0, range], so the [-1, 1] images are shifted to [0, 1] first.
    x, y = (x.float() + 1) / 2, (y.float() + 1) / 2
    data_range = data_range / 2
    c = x.shape[1]
    size = min(window_size, x.shape[-1], x.shape[-2])
    w = _gaussian_window(size, sigma, c, x.device, x.dtype)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x = F.conv2d(x, w, groups=c)  # (B, C, H', W')
    mu_y = F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).flatten(1).mean(1)
