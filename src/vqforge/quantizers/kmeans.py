"""K-means for codebook initialisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iters: int = 10, cosine: bool = False,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on the rows of ``x`` (N, D).

    Centres start at ``k`` distinct random rows (sampled with replacement when N < k). A cluster that
    ends up empty keeps its previous centre. With ``cosine`` the points and centres live on the unit
    sphere (spherical k-means, for l2-normalised codes).

    Returns:
        centres (k, D) and cluster sizes (k,) from the last assignment.
    """
    x = x.float()
    if cosine:
        x = F.normalize(x, dim=1)
    n = x.shape[0]
    if n >= k:
        pick = torch.randperm(n, generator=generator, device="cpu")[:k].to(x.device)
    else:
        pick = torch.randint(0, n, (k,), generator=generator, device="cpu").to(x.device)
    centres = x[pick].clone()  # (k, D)
    counts = torch.zeros(k, device=x.device)
    for _ in range(max(1, iters)):
        if cosine:
            assign = (x @ centres.t()).argmax(dim=1)  # (N,)
        else:
            d = x.pow(2).sum(1, keepdim=True) - 2.0 * x @ centres.t() + centres.pow(2).sum(1)  # (N, k)
            assign = d.argmin(dim=1)
        counts = torch.bincount(assign, minlength=k).float()  # (k,)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)  # (k, D)
        filled = counts > 0
        new = sums[filled] / counts[filled, None]
        centres[filled] = F.normalize(new, dim=1) if cosine else new
    return centres, counts
