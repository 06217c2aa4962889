"""The entropy penalty of MaskGIT / LFQ: confident per-latent assignments, a uniformly used codebook."""

from __future__ import annotations

import torch


def _entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-10))).sum(dim)


def entropy_penalty(distances: torch.Tensor, temperature: float = 0.01) -> dict[str, torch.Tensor]:
    """Entropy terms from distances (N, K) between N latents and K codes.

    The soft assignment is ``p = softmax(-distances / temperature)``. Returns ``penalty`` =
    mean per-latent entropy (to make small) minus the entropy of the codebook-average assignment
    (to make large), and both parts, ``sample_entropy`` and ``codebook_entropy``.
    """
    p = torch.softmax(-distances.float() / temperature, dim=1)  # (N, K)
    sample = _entropy(p).mean()
    codebook = _entropy(p.mean(dim=0))
    return {"penalty": sample - codebook, "sample_entropy": sample, "codebook_entropy": codebook}
