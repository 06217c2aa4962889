"""Numerics of a training step: precision, optimisers, gradient norms and clipping, non-finite steps, EMA.

* :func:`autocast` - bf16 autocast where the run's precision resolves to bf16 (weights, optimiser state
  and losses stay fp32: compute the loss from ``logits.float()``).
* :func:`adam` - Adam / AdamW with the fused kernel where this torch has it for the parameters' device
  (measured on a 2-core CPU: 3-4x faster optimiser steps than the for-each or per-tensor paths).
* :class:`StepGuard` - one optimisation step's safety: every loss and every gradient norm must be finite,
  else nothing of the step is applied (no optimiser step, buffers such as BatchNorm statistics or EMA
  codebooks restored, no EMA update), a warning names the loss, and after ``max_nonfinite`` such steps in
  a row the run stops (the loop's message names the checkpoint to resume from). Optional clipping of each optimiser's gradient norm.
* :class:`EMA` - an exponential moving average of a model's weights.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

from ..devices import autocast as _autocast
from ..io import VQForgeError
from .distributed import DistInfo, any_rank, unwrap


def autocast(device: torch.device, dtype: torch.dtype):
    """bf16 autocast on ``device`` when ``dtype`` is bf16, else nothing (fp32)."""
    return _autocast(device, dtype)


def adam(params: Any, lr: float, betas: tuple[float, ...], weight_decay: float = 0.0, decoupled: bool = False,
         fused: bool = True) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (or ``AdamW`` when ``decoupled``), fused where available for these parameters
    (``fused=False``: torch's default kernel, e.g. to measure what fusing buys)."""
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    groups = list(params)
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    kinds = {p.device.type for p in tensors}
    fused = fused and len(kinds) == 1 and kinds <= {"cpu", "cuda"} and all(p.dtype == torch.float32 for p in tensors)
    kwargs = {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay}
    if fused:
        try:
            return cls(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError):  # this torch has no fused kernel for the device
            pass
    return cls(groups, **kwargs)


def grad_norm(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Total L2 norm of the gradients of ``params`` (a 0-dim fp32 tensor; 0 when none has a gradient)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, 2.0, error_if_nonfinite=False, foreach=True).float()


class StepGuard:
    """Applies or skips one training step's optimiser updates (see the module doc).

    ``updates``: name -> (optimizer, parameters). ``buffers``: modules whose buffers a forward pass may
    change (restored when the step is skipped). ``clip``: max gradient norm per optimizer (0 = off).
    """

    def __init__(self, updates: dict[str, tuple[torch.optim.Optimizer, list[torch.Tensor]]], buffers: list[nn.Module],
                 clip: float, max_nonfinite: int, dist: DistInfo):
        self.updates, self.clip, self.max_nonfinite, self.dist = updates, clip, max_nonfinite, dist
        self.buffer_modules = buffers
        self.in_a_row, self.skipped = 0, 0
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    def zero_grad(self) -> None:
        """Clear the gradients and remember the buffers (call before the step's forward passes)."""
        for opt, _ in self.updates.values():
            opt.zero_grad(set_to_none=True)
        self._saved = [(b, b.detach().clone()) for m in self.buffer_modules for b in m.buffers()]

    def apply(self, losses: dict[str, torch.Tensor | float], step: int) -> tuple[bool, dict[str, float], str]:
        """Check, clip and step every optimizer; returns (applied, gradient norms, why it was skipped)."""
        bad = next((k for k, v in losses.items() if not math.isfinite(float(v))), "")
        norms: dict[str, float] = {}
        if not bad:
            for name, (_, params) in self.updates.items():
                norm = float(grad_norm(params))
                norms[name] = norm
                if not math.isfinite(norm):
                    bad = f"{name} gradient norm"
                    break
        if any_rank(bool(bad), self.dist):
            self._skip()
            why = (f"{bad} = {float(losses[bad]) if bad in losses else 'non-finite'}" if bad
                   else "non-finite values on another process")
            return False, norms, why
        self.in_a_row = 0
        for name, (opt, params) in self.updates.items():
            if self.clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.clip, foreach=True)
            opt.step()
        return True, norms, ""

    def _skip(self) -> None:
        self.in_a_row += 1
        self.skipped += 1
        for opt, _ in self.updates.values():
            opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            for b, saved in self._saved:
                b.copy_(saved)


class EMA:
    """Exponential moving average of a model's floating-point parameters (buffers are copied).

    ``state_dict()`` uses the model's own keys, so it loads into a fresh model with ``load_state_dict``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
                       for k, v in unwrap(model).state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in unwrap(model).state_dict().items():
            s = self.shadow[k]
            if v.is_floating_point():
                s.lerp_(v.detach().float(), 1.0 - self.decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        sd = unwrap(model).state_dict()
        for k, v in self.shadow.items():
            sd[k].copy_(v)
