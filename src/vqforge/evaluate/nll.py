"""Negative log-likelihood of held-out tokens under a second-stage transformer (bits per dim)."""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F


@torch.inference_mode()
def token_nll(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
              image_hw: tuple[int, int] | None = None, channels: int = 3, total: int | None = None, progress: bool = True) -> dict:
    """Teacher-forced NLL of image tokens given their condition tokens.

    ``model``: a :class:`vqforge.models.transformer.Net2NetTransformer` (``forward_tokens(z, c) -> logits,
    targets``; run in eval mode, so no label dropout or token noise). ``batches`` yields ``(z, c)``: image
    tokens (B, N) and condition tokens (B, Tc). Returns ``nats_per_token``, ``bits_per_token``, and, with
    ``image_hw`` (pixel size), ``bits_per_dim``: total bits of an image's tokens over its ``channels``*H*W
    sub-pixels (as :func:`vqforge.data.tokens.bits_per_dim`) (the latent code's share of an image's description length; not a pixel likelihood).
    """
    from tqdm import tqdm

    model.eval()
    device = next(model.parameters()).device
    nats, tokens, images = 0.0, 0, 0
    with tqdm(total=total, desc="nll", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for z, c in batches:
            z, c = z.to(device).long(), c.to(device).long()
            logits, targets = model.forward_tokens(z, c)  # (B, N, V), (B, N)
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="sum")
            nats += float(nll)
            tokens += targets.numel()
            images += z.shape[0]
            bar.update(z.shape[0])
    if tokens == 0:
        raise ValueError("no tokens to evaluate")
    res = {"n_images": images, "n_tokens": tokens, "tokens_per_image": tokens // max(images, 1),
           "nats_per_token": nats / tokens, "bits_per_token": nats / tokens / math.log(2), "bits_per_dim": None,
           "image_hw": list(image_hw) if image_hw else None, "channels": channels}
    if image_hw is not None:
        res["bits_per_dim"] = nats / math.log(2) / (images * channels * image_hw[0] * image_hw[1])
    return res
