"""Classifier-based rejection sampling (the paper's ImageNet table, "acceptance rate"): draw more candidates than
asked for, score each by a classifier's probability of the class it was drawn for, keep the best fraction.

A job of ``n`` samples cycles through its ``k`` inputs (sample ``s`` is drawn for input ``s % k``, as
:func:`~vqforge.sampling.pipeline.draw_batches` does). At acceptance ``R`` it draws ``m = ceil(n / R)`` candidates
(candidate ``i`` for input ``i % k``, so every input has at least as many candidates as samples), keeps the
``n_j`` best-scored candidates of each input ``j`` and returns them in the job's order. Exactly ``n`` of ``m`` are
kept: the fraction is ``R`` itself whenever ``n / R`` is a whole number (else the nearest fraction below it,
:attr:`RejectionPlan.realised`).

>>> plan = plan_rejection(n=8, n_inputs=2, acceptance=0.25)        # doctest: +SKIP
>>> batches = rejection_batches(model, lay, inputs, plan, 4, settings, score, generator)
>>> for picks, images in batches: ...                              # picks: which input each kept sample used
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .generate import DecodeOptions
from .pipeline import Layout, draw_batches
from .processors import SamplingSettings
from .progress import Progress

#: ``score(images (B, C, H, W) in [-1, 1], inputs: which job input each image was drawn for) -> (B,)``; higher
#: is better (e.g. a classifier's probability of the requested class)
Scorer = Callable[[torch.Tensor, list[int]], torch.Tensor]


@dataclass(frozen=True)
class RejectionPlan:
    """What a rejection job draws and keeps: ``inputs[i]``, the job input candidate ``i`` is drawn for; ``keep[j]``,
    how many samples input ``j`` gets (its best-scored candidates)."""

    acceptance: float
    inputs: tuple[int, ...]
    keep: tuple[int, ...]

    @property
    def n_candidates(self) -> int:
        return len(self.inputs)

    @property
    def n_kept(self) -> int:
        return sum(self.keep)

    @property
    def realised(self) -> float:
        """The fraction of candidates kept (``acceptance`` when ``n / acceptance`` is a whole number)."""
        return self.n_kept / self.n_candidates


def plan_rejection(n: int, n_inputs: int, acceptance: float) -> RejectionPlan:
    """The plan for ``n`` samples over ``n_inputs`` inputs at ``acceptance`` in (0, 1] (ValueError otherwise)."""
    if not 0.0 < acceptance <= 1.0:
        raise ValueError(f"acceptance {acceptance:g}: expected a fraction in (0, 1]")
    if n < 1 or n_inputs < 1:
        raise ValueError(f"rejection sampling needs at least one sample and one input (got {n}, {n_inputs})")
    m = max(n, math.ceil(n / acceptance - 1e-9))  # the tolerance keeps 3 / 0.3 at 10
    keep = tuple(len(range(j, n, n_inputs)) for j in range(n_inputs))
    return RejectionPlan(acceptance, tuple(i % n_inputs for i in range(m)), keep)


def select(scores: torch.Tensor, plan: RejectionPlan) -> torch.Tensor:
    """Candidate indices (n,) to keep, given their ``scores`` (m,): for each input its ``keep[j]`` best (ties: the
    earlier candidate), ordered as the job's samples (sample ``s`` is the next best of input ``s % k``)."""
    if scores.shape != (plan.n_candidates,):
        raise ValueError(f"{tuple(scores.shape)} scores for {plan.n_candidates} candidates")
    owner = torch.tensor(plan.inputs)  # (m,)
    best: list[list[int]] = []
    for j, k in enumerate(plan.keep):
        idx = (owner == j).nonzero().flatten()  # (m_j,) in drawing order
        order = torch.sort(scores[idx].float().cpu(), descending=True, stable=True).indices
        best.append(idx[order[:k]].tolist())
    taken = [0] * len(plan.keep)
    out = []
    for s in range(plan.n_kept):
        j = s % len(plan.keep)
        out.append(best[j][taken[j]])
        taken[j] += 1
    return torch.tensor(out, dtype=torch.long)


def rejection_batches(model, lay: Layout, inputs: list[torch.Tensor | None], plan: RejectionPlan, batch_size: int,
                      settings: SamplingSettings, score: Scorer, generator: torch.Generator | None = None,
                      decoding: DecodeOptions = DecodeOptions(), callback: Progress | None = None,
                      scores_out: list[float] | None = None) -> Iterator[tuple[list[int], torch.Tensor]]:
    """:func:`~vqforge.sampling.pipeline.draw_batches` with rejection: draws ``plan.n_candidates`` candidates,
    scores each batch as it is drawn, then yields the ``plan.n_kept`` kept samples as (which of ``inputs`` each
    used, images (B, C, H, W) in [-1, 1]) in batches of up to ``batch_size``. ``scores_out`` (a list) receives
    the kept samples' scores, in order."""
    candidates = [inputs[j] for j in plan.inputs]
    images, scores = [], []
    for picks, x in draw_batches(model, lay, candidates, plan.n_candidates, batch_size, settings, generator,
                                 decoding=decoding, callback=callback):
        s = score(x, [plan.inputs[i] for i in picks]).flatten()  # (B,)
        if s.shape[0] != x.shape[0]:
            raise ValueError(f"the scorer gave {s.shape[0]} scores for {x.shape[0]} images")
        images.append(x.cpu())
        scores.append(s.float().cpu())
    all_scores = torch.cat(scores)  # (m,)
    kept = select(all_scores, plan)  # (n,)
    if scores_out is not None:
        scores_out.extend(all_scores[kept].tolist())
    x_all = torch.cat(images)
    for start in range(0, len(kept), batch_size):
        chosen = kept[start:start + batch_size]
        yield [plan.inputs[i] for i in chosen.tolist()], x_all[chosen]
