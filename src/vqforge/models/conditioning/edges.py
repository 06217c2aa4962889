"""Edge maps of the image itself (Canny, written in torch) through a one-channel edge condition stage."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .base import StageTraining
from .spatial import StageCondition, StageConfig


@dataclass(frozen=True)
class EdgesConfig(StageConfig):
    """canny_sigma, canny_low, canny_high: edge detector settings (thresholds relative to the image's
    strongest gradient)."""

    mode: ClassVar[str] = "edges"
    canny_sigma: float = 1.0
    canny_low: float = 0.1
    canny_high: float = 0.2


def _gaussian_kernel(sigma: float, device, dtype) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def canny(images: torch.Tensor, sigma: float = 1.0, low: float = 0.1, high: float = 0.2,
          max_iters: int = 256) -> torch.Tensor:
    """Canny edges of images (B, C, H, W) in [-1, 1] -> edge maps (B, 1, H, W) in {0, 1}.

    Gaussian blur (``sigma``), Sobel gradients, non-maximum suppression along the gradient direction
    (quantised to 0/45/90/135 degrees), then hysteresis: pixels above ``high`` x (the image's strongest
    gradient) are edges, and pixels above ``low`` x that connect to them (8-neighbourhood) are kept too.
    """
    x = images.float()
    if x.shape[1] == 3:
        x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])  # (B, 1, H, W) luma
    elif x.shape[1] != 1:
        x = x.mean(1, keepdim=True)
    if sigma > 0:
        k = _gaussian_kernel(sigma, x.device, x.dtype)
        r = k.numel() // 2
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(xp, sobel_x.view(1, 1, 3, 3))
    gy = F.conv2d(xp, sobel_x.t().contiguous().view(1, 1, 3, 3))
    mag = torch.sqrt(gx ** 2 + gy ** 2)  # (B, 1, H, W)
    # direction bins: 0 -> horizontal gradient (compare left/right), 1 -> 45 deg, 2 -> vertical, 3 -> 135 deg
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
    bins = (((angle + 22.5) // 45.0) % 4).long()
    mp = F.pad(mag, (1, 1, 1, 1))
    H, W = mag.shape[-2:]

    def shifted(dy: int, dx: int) -> torch.Tensor:
        return mp[..., 1 + dy:1 + dy + H, 1 + dx:1 + dx + W]

    # neighbours along the gradient; image rows grow downwards, so +45 deg (gy>0, gx>0) is (dy=+1, dx=+1)
    pairs = [((0, 1), (0, -1)), ((1, 1), (-1, -1)), ((1, 0), (-1, 0)), ((1, -1), (-1, 1))]
    keep = torch.zeros_like(mag, dtype=torch.bool)
    for b, (p, q) in enumerate(pairs):
        local_max = (mag > shifted(*p)) & (mag >= shifted(*q))  # ties: keep one side
        keep |= (bins == b) & local_max
    nms = mag * keep
    peak = nms.flatten(1).max(1).values.view(-1, 1, 1, 1).clamp_min(1e-8)
    strong = nms >= high * peak
    weak = (nms >= low * peak) & (nms > 0)
    edges = strong
    for _ in range(max_iters):  # hysteresis: grow strong edges through connected weak pixels
        grown = (F.max_pool2d(edges.float(), 3, stride=1, padding=1) > 0) & weak
        grown |= edges
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges.float()


class Edges(StageCondition):
    """Model input: edge maps (B, 1, H, W) in {-1, 1}, computed from the images. Condition files: photos (their
    edges are detected)."""

    Config = EdgesConfig
    input_hint = "photos whose edges condition the samples (--cond)"
    stage_channels = 1
    stage_training = StageTraining(logits=True)  # binary cross-entropy on the decoder's logits of the edges

    @classmethod
    def takes_stage(cls, in_channels: int) -> bool:
        return False  # a one-channel stage suggests depth; edges are asked for by name

    def build_input(self, images=None, raw=None) -> torch.Tensor:
        if images is None:
            raise ValueError("edge conditioning is computed from the images")
        c = self.config
        return canny(images, c.canny_sigma, c.canny_low, c.canny_high) * 2 - 1  # (B, 1, H, W) in {-1, 1}

    def displayable(self, rec: torch.Tensor) -> torch.Tensor:
        return torch.where(rec > 0, -1.0, 1.0)  # edges (or their logits) black on white

    def stage_metrics(self, rec, x):
        pred, true = rec > 0, x > 0
        tp = (pred & true).sum().item()
        precision, recall = tp / max(pred.sum().item(), 1), tp / max(true.sum().item(), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        return {"val/edge_f1": f1, "val/edge_fraction": true.float().mean().item()}
