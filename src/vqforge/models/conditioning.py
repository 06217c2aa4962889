"""Conditioning of the second stage: the condition config, the coordinate stage and condition builders.

A condition reaches the transformer as a short sequence of token ids placed *before* the image tokens
(the paper's layout). How a raw condition becomes those tokens depends on :attr:`ConditionConfig.mode`:

=============== ============================================ =========================================
mode            model input ``c`` (what ``encode_to_c`` takes) tokens
=============== ============================================ =========================================
unconditional   anything with a batch dimension (the images)  one start token ``sos_token``
class           labels (B,) int64; ``-1`` = the NULL class    one token per image: the label id
segmentation    one-hot maps (B, n_labels, H, W) in {0, 1}   cond-stage VQGAN indices, raster order
depth           depth (B, 1, H, W) in [-1, 1]                cond-stage VQGAN indices, raster order
edges           edge maps (B, 1, H, W) in {-1, 1}            cond-stage VQGAN indices, raster order
lowres          images (B, 3, H/r, W/r) in [-1, 1]           cond-stage VQGAN indices, raster order
coord           coordinates (B, 1, H, W) in [0, 1]           :class:`CoordStage` ids, raster order
tokens          token ids (B, Tc) int64                      passed through (the original's dummy stage)
=============== ============================================ =========================================

:func:`build_condition` turns raw data (images, labels, label maps, depth maps) into that model input,
including the Canny edge detector (:func:`canny`), written in plain torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .vqgan import VQGANConfig

ConditionMode = Literal["unconditional", "class", "segmentation", "depth", "edges", "lowres", "coord", "tokens"]
SPATIAL_MODES = ("segmentation", "depth", "edges", "lowres")


@dataclass(frozen=True)
class ConditionConfig:
    """What the transformer is conditioned on.

    mode: see the module docstring. sos_token: the start token of unconditional models.
    n_classes: number of classes (class mode). null_class: a NULL class token with id ``n_classes``
    exists (classifier-free guidance; the original's class models have none). class_dropout: probability
    that a training label is replaced by the NULL class. cond_stage: the frozen VQGAN of spatial modes
    (segmentation: ``in_channels == n_labels``; depth/edges: 1 channel; lowres: 3 channels).
    n_labels: segmentation label count. downsample_cond_size: resize the condition to this square size
    before encoding (the original's option; -1 = off). lowres_factor: how much smaller the lowres
    condition is than the image. coord_n_embed, coord_down_factor: the coordinate stage.
    canny_sigma, canny_low, canny_high: edge detector settings (thresholds relative to the image's
    strongest gradient).
    """

    mode: ConditionMode = "unconditional"
    sos_token: int = 0
    n_classes: int = 0
    null_class: bool = True
    class_dropout: float = 0.0
    cond_stage: VQGANConfig | None = None
    n_labels: int = 0
    downsample_cond_size: int = -1
    lowres_factor: int = 4
    coord_n_embed: int = 1024
    coord_down_factor: int = 16
    canny_sigma: float = 1.0
    canny_low: float = 0.1
    canny_high: float = 0.2

    @property
    def is_spatial(self) -> bool:
        return self.mode in SPATIAL_MODES or self.mode == "coord"


class CoordStage(nn.Module):
    """The original's ``CoordStage``: quantises a coordinate map in [0, 1] to ``n_embed`` levels.

    Has no parameters; ``encode(c (B, 1, H, W)) -> ids (B, H/f, W/f)``, ``decode(ids) -> (B, 1, H, W)``.
    """

    def __init__(self, n_embed: int, down_factor: int):
        super().__init__()
        self.n_embed = n_embed
        self.down_factor = down_factor

    @property
    def n_codes(self) -> int:
        return self.n_embed + 1

    @property
    def downsample_factor(self) -> int:
        return self.down_factor

    def encode_to_indices(self, c: torch.Tensor) -> torch.Tensor:
        if c.shape[1] != 1:
            raise ValueError(f"coordinate conditions have 1 channel, got {c.shape[1]}")
        c = F.interpolate(c, scale_factor=1 / self.down_factor, mode="area").clamp(0.0, 1.0)
        # NOTE: round(n_embed * c) as the original, so ids span 0..n_embed inclusive.
        return (self.n_embed * c).round().long()[:, 0]  # (B, h, w)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        c = indices[:, None].float() / self.n_embed
        return F.interpolate(c, scale_factor=self.down_factor, mode="nearest")


# ------------------------------------------------------------------------------------------ builders
def coord_map(batch: int, height: int, width: int, device=None) -> torch.Tensor:
    """The original FacesHQ coordinate map: raster position / (H*W), shape (B, 1, H, W), in [0, 1)."""
    c = torch.arange(height * width, device=device, dtype=torch.float32).view(1, 1, height, width) / (height * width)
    return c.expand(batch, 1, height, width).contiguous()


def one_hot_labels(labels: torch.Tensor, n_labels: int) -> torch.Tensor:
    """Label maps (B, H, W) int -> one-hot float maps (B, n_labels, H, W) in {0, 1}."""
    if labels.dim() == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.min() < 0 or labels.max() >= n_labels:
        raise ValueError(f"label ids must lie in [0, {n_labels}), got [{int(labels.min())}, {int(labels.max())}]")
    return F.one_hot(labels.long(), n_labels).permute(0, 3, 1, 2).float()  # (B, n_labels, H, W)


def normalize_depth(depth: torch.Tensor) -> torch.Tensor:
    """Per-image min/max normalisation of depth (B, [1,] H, W) to [-1, 1] (the original D-RIN recipe)."""
    if depth.dim() == 3:
        depth = depth[:, None]
    flat = depth.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1, 1)
    hi = flat.max(1).values.view(-1, 1, 1, 1)
    return (depth - lo) / (hi - lo).clamp_min(1e-8) * 2 - 1


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


def build_condition(cfg: ConditionConfig, images: torch.Tensor | None = None, raw: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """The model input condition (what ``Net2NetTransformer.encode_to_c`` takes) from raw data.

    images: (B, 3, H, W) in [-1, 1]. raw: the mode's own data: class labels (B,) (``-1`` = NULL);
    segmentation label maps (B, H, W) int; depth maps (B, [1,] H, W) of any range (normalised per image);
    coordinate maps (B, 1, H, W) in [0, 1] (default: the full image's raster positions). Edges and
    lowres conditions are computed from ``images``.
    """
    mode = cfg.mode
    if mode == "unconditional":
        if images is None and raw is None:
            raise ValueError("unconditional: pass the images (their batch size sets the start tokens)")
        return images if images is not None else raw
    if mode == "class":
        if raw is None:
            raise ValueError("class conditioning needs the labels (B,)")
        return raw.long().view(-1)
    if mode == "segmentation":
        if raw is None:
            raise ValueError("segmentation conditioning needs label maps (B, H, W)")
        if raw.dim() == 4 and raw.shape[1] == cfg.n_labels and raw.dtype.is_floating_point:
            return raw  # already one-hot
        return one_hot_labels(raw, cfg.n_labels)
    if mode == "depth":
        if raw is None:
            raise ValueError("depth conditioning needs depth maps (B, 1, H, W)")
        return normalize_depth(raw.float())
    if mode == "edges":
        if images is None:
            raise ValueError("edge conditioning is computed from the images")
        return canny(images, cfg.canny_sigma, cfg.canny_low, cfg.canny_high) * 2 - 1  # (B, 1, H, W) in {-1, 1}
    if mode == "lowres":
        if images is None:
            raise ValueError("lowres conditioning is computed from the images")
        return F.interpolate(images, scale_factor=1 / cfg.lowres_factor, mode="area")
    if mode == "tokens":
        if raw is None:
            raise ValueError("token conditioning needs the token ids (B, Tc)")
        return raw.long()
    if mode == "coord":
        if raw is not None:
            return raw
        if images is None:
            raise ValueError("coord conditioning needs the images or a coordinate map")
        B, _, H, W = images.shape
        return coord_map(B, H, W, images.device)
    raise ValueError(f"unknown condition mode {mode!r}")


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
