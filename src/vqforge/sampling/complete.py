"""Image completion: resample the tokens under a mask, keep the rest (the paper's completion / inpainting-like use).

Masked tokens are drawn in raster order, each conditioned on all tokens before it (the kept ones and the
ones already resampled), exactly as in plain sampling; tokens after a masked one cannot influence it
(the transformer is causal). Grids larger than the trained window use the sliding window.

The decoder redraws every pixel, the kept ones too (as their reconstruction, which may differ in colour and
detail): :func:`paste_back` puts the original pixels back outside the mask, blending across a feathered seam
just inside it, so that a completion keeps exactly what it was told to keep.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.gpt import GPT
from .generate import DecodeOptions
from .processors import SamplingSettings
from .progress import Progress
from .sliding import sample_sliding


def token_mask(pixel_mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Pixel mask (B, 1, H, W) or (B, H, W) or (H, W), True/nonzero = resample -> token mask (B, H/f, W/f).

    A token is masked when any pixel of its ``factor`` x ``factor`` patch is masked.
    """
    m = pixel_mask
    if m.dim() == 2:
        m = m[None, None]  # (1, 1, H, W)
    elif m.dim() == 3:
        m = m[:, None]  # (B, 1, H, W)
    if m.shape[1] != 1:
        raise ValueError(f"a mask has one channel, got {m.shape[1]}")
    H, W = m.shape[-2:]
    if H % factor or W % factor:
        raise ValueError(f"mask size {H}x{W} is not a multiple of the downsampling factor {factor}")
    return F.max_pool2d((m != 0).float(), factor)[:, 0] > 0  # (B, h, w)


def seam_weights(pixel_mask: torch.Tensor, feather: int) -> torch.Tensor:
    """How much of the completion each pixel takes (B, 1, H, W) in [0, 1] from a pixel mask (as
    :func:`token_mask` takes it; nonzero = resampled): exactly 0 outside the mask, rising by steps of
    1 / (feather + 1) from the mask's edge inwards to 1 at ``feather`` pixels inside it (the image's border is
    not an edge). ``feather`` 0: the mask itself."""
    m = pixel_mask
    if m.dim() == 2:
        m = m[None, None]  # (1, 1, H, W)
    elif m.dim() == 3:
        m = m[:, None]  # (B, 1, H, W)
    m = (m != 0).float()
    total, eroded = m.clone(), m
    for _ in range(feather):
        # erosion by one pixel (3x3): the padding counts as masked (max_pool pads -m with -inf)
        eroded = -F.max_pool2d(-eroded, 3, stride=1, padding=1)
        total += eroded
    return total / (feather + 1)


def paste_back(original: torch.Tensor, completed: torch.Tensor, pixel_mask: torch.Tensor,
               feather: int) -> torch.Tensor:
    """``completed`` (B, C, H, W) with ``original`` (B or 1, C, H, W) put back where ``pixel_mask`` is not set,
    blended over a ``feather``-pixel seam inside the mask (:func:`seam_weights`). Unmasked pixels are the
    original's exactly."""
    w = seam_weights(pixel_mask, feather).to(completed)  # (B or 1, 1, H, W)
    original = original.to(completed).expand_as(completed)
    return torch.where(w > 0, torch.lerp(original, completed, w), original)


@torch.inference_mode()
def complete_tokens(model: GPT, cond: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                    window_hw: tuple[int, int], settings: SamplingSettings = SamplingSettings(),
                    generator: torch.Generator | None = None, uncond: torch.Tensor | None = None,
                    n_vocab: int | None = None, decoding: DecodeOptions = DecodeOptions(),
                    callback: Progress | None = None) -> torch.Tensor:
    """Resample ``tokens`` (B, h, w) where ``mask`` ((B,) h, w) is True; every other token is returned unchanged."""
    B, h, w = tokens.shape
    mask = mask.to(tokens.device).expand(B, h, w)
    return sample_sliding(model, cond, (h, w), window_hw, settings, generator, uncond, n_vocab,
                          init=tokens, mask=mask, decoding=decoding, callback=callback)
