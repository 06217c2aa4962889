"""Decoding a token grid in overlapping tiles, blended: images whose whole decode does not fit in memory.

A VQGAN decoder's attention blocks compare every position with every other one, so decoding an h x w grid at
once costs memory quadratic in h * w (a 252 x 252 grid of the bundled ``fashion`` model: about 16 GB per image
per attention block). :func:`decode_tiled` decodes tiles of ``tile_hw`` tokens instead, placed like the sliding
window's windows (tiles step by ``tile - overlap`` and the last one stops at the grid's edge), and blends the
overlaps with linear ramps, so that no seam shows where two tiles meet. Memory is that of one tile's decode plus
the output image. The whole decode is used whenever it fits (:func:`vqforge.sampling.memory.fit_budget` decides):
its attention sees the whole image, a tile's sees the tile.
"""

from __future__ import annotations

import torch

from ..models.vqgan import VQGAN

#: a tiled decode's overlap between neighbouring tiles, as a share of the tile's side (at least one token)
TILE_OVERLAP = 0.25


def tile_overlap(tile_hw: tuple[int, int]) -> int:
    """Tokens shared by neighbouring tiles of ``tile_hw``."""
    return max(1, int(min(tile_hw) * TILE_OVERLAP))


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of ``tile`` covering [0, n), neighbours sharing at least ``overlap`` (the last tile ends at
    ``n``, as the sliding window's last window does)."""
    if tile >= n:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, n - tile, step))
    return starts + [n - tile]


def _ramp(length: int, start: int, end: int, n: int, overlap: int, device) -> torch.Tensor:
    """Weights (length,) of one tile's pixels along an axis: rising over ``overlap`` pixels where the tile has a
    neighbour before it, falling where it has one after it, 1 elsewhere (never 0, so every pixel is covered)."""
    w = torch.ones(length, device=device)
    ramp = (torch.arange(overlap, device=device, dtype=torch.float32) + 0.5) / overlap
    if start > 0 and overlap:
        w[:overlap] = torch.minimum(w[:overlap], ramp)
    if end < n and overlap:
        w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
    return w


@torch.no_grad()
def decode_tiled(vqgan: VQGAN, indices: torch.Tensor, tile_hw: tuple[int, int], overlap: int) -> torch.Tensor:
    """Images (B, C, H, W) from token ids ``indices`` (B, h, w), decoded in tiles of ``tile_hw`` tokens that share
    ``overlap`` tokens with their neighbours (blended linearly over the shared pixels)."""
    B, h, w = indices.shape
    f = vqgan.downsample_factor
    th, tw = min(tile_hw[0], h), min(tile_hw[1], w)
    out = None
    weight = torch.zeros(h * f, w * f, device=indices.device)  # (H, W)
    for i0 in tile_starts(h, th, overlap):
        wy = _ramp(th * f, i0, i0 + th, h, min(overlap, th // 2) * f, indices.device)
        for j0 in tile_starts(w, tw, overlap):
            x = vqgan.decode_indices(indices[:, i0:i0 + th, j0:j0 + tw])  # (B, C, th*f, tw*f)
            if out is None:
                out = torch.zeros(B, x.shape[1], h * f, w * f, device=x.device, dtype=x.dtype)
            wx = _ramp(tw * f, j0, j0 + tw, w, min(overlap, tw // 2) * f, indices.device)
            wt = wy[:, None] * wx[None, :]  # (th*f, tw*f)
            out[:, :, i0 * f:(i0 + th) * f, j0 * f:(j0 + tw) * f] += x * wt
            weight[i0 * f:(i0 + th) * f, j0 * f:(j0 + tw) * f] += wt
    return out / weight
