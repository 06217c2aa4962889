"""Tiny torch.distributed helpers: no-ops unless a process group is initialised."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when torch.distributed is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` in place over all ranks (no-op on a single process); returns ``t``."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_from_rank0(t: torch.Tensor) -> torch.Tensor:
    """Overwrite ``t`` in place with rank 0's copy (no-op on a single process); returns ``t``."""
    if is_distributed():
        dist.broadcast(t, src=0)
    return t


def all_reduce_min(t: torch.Tensor) -> torch.Tensor:
    """Minimum of ``t`` in place over all ranks (no-op on a single process); returns ``t``."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t
