"""Codebook usage: which fraction of the codes is hit, and the perplexity of the code distribution."""

from __future__ import annotations

from collections import deque

import torch

from .distributed import all_reduce_sum


class CodebookUsage:
    """Counts code hits over a sliding window of steps (``window=N``) or over everything since the last
    :meth:`reset` (``window=None``, e.g. for a validation pass).

    >>> meter = CodebookUsage(model.n_codes, window=100)   # doctest: +SKIP
    >>> meter.update(out.quantizer.indices)                # once per training step
    >>> meter.summary()                                    # {"usage": 0.93, "perplexity": 871.2, "codes_used": 952}

    ``update(indices, sync=True)`` all-reduces the step's counts over ranks when torch.distributed is
    initialised (every rank must then call it), so every rank reports the global usage.
    """

    def __init__(self, n_codes: int, window: int | None = None):
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        self.n_codes = n_codes
        self.window = window
        self.reset()

    def reset(self) -> None:
        """Forget all counts."""
        self._steps: deque[torch.Tensor] = deque()
        self._total = torch.zeros(self.n_codes, dtype=torch.long)

    @torch.no_grad()
    def update(self, indices: torch.Tensor, sync: bool = True) -> None:
        """Add one step's code ids (any shape)."""
        counts = torch.bincount(indices.detach().flatten().long(), minlength=self.n_codes)[: self.n_codes]
        if sync:
            counts = all_reduce_sum(counts)
        counts = counts.cpu()
        self._total += counts
        if self.window is not None:
            self._steps.append(counts)
            if len(self._steps) > self.window:
                self._total -= self._steps.popleft()

    @property
    def counts(self) -> torch.Tensor:
        """(n_codes,) hits per code in the window."""
        return self._total.clone()

    def codes_used(self) -> int:
        """Number of distinct codes hit in the window."""
        return int((self._total > 0).sum())

    def usage(self) -> float:
        """Fraction of codes hit at least once in the window."""
        return self.codes_used() / self.n_codes

    def perplexity(self) -> float:
        """exp(entropy) of the code distribution in the window (n_codes when uniform, 1 when collapsed)."""
        p = self._total.double() / max(int(self._total.sum()), 1)
        return float(torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum()))

    def summary(self, prefix: str = "") -> dict[str, float]:
        """``{prefix+"usage", prefix+"perplexity", prefix+"codes_used"}`` for logging."""
        return {f"{prefix}usage": self.usage(), f"{prefix}perplexity": self.perplexity(),
                f"{prefix}codes_used": float(self.codes_used())}


@torch.no_grad()
def validation_usage(model, batches, device: torch.device | str | None = None) -> dict[str, float]:
    """Usage and perplexity of ``model`` (anything with ``n_codes`` and ``encode_to_indices``) over the image
    batches ``batches`` (an iterable of (B, C, H, W) tensors in [-1, 1]); the model is put in eval mode
    for the pass and its previous mode restored."""
    meter = CodebookUsage(model.n_codes)
    was_training = model.training
    model.eval()
    try:
        for x in batches:
            if device is not None:
                x = x.to(device)
            meter.update(model.encode_to_indices(x))
    finally:
        model.train(was_training)
    return meter.summary()
