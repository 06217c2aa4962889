"""Image completion: resample the tokens under a mask, keep the rest (the paper's completion / inpainting-like use).

Masked tokens are drawn in raster order, each conditioned on all tokens before it (the kept ones and the
ones already resampled), exactly as in plain sampling; tokens after a masked one cannot influence it
(the transformer is causal). Grids larger than the trained window use the sliding window.
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
