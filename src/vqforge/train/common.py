"""The generic training pieces under their former single-module name.

They now live in small modules: :mod:`.distributed` (processes, DDP, signals), :mod:`.stream` (data order
and randomness), :mod:`.checkpoint` (run directory and checkpoint record), :mod:`.numerics` (precision,
optimisers, non-finite steps, EMA), :mod:`.console` (logging, progress, summaries), :mod:`.settings` (the
settings vocabulary) and :mod:`.loop` (the one training loop). This module re-exports the names that code
written against ``vqforge.train.common`` uses.
"""

from __future__ import annotations

from ..devices import resolve_device as _resolve_device
from .checkpoint import Checkpoint, RunDir
from .console import MetricLogger
from .distributed import (DistInfo, StopRequest, all_reduce_grads, any_rank, barrier, broadcast_module,
                          setup_distributed, teardown_distributed, unwrap, wrap_ddp)
from .numerics import EMA, grad_norm
from .stream import (BatchStream, ResumableSampler, gather_rng_states, rng_state, seed_everything,
                     set_rng_state)

__all__ = ["Checkpoint", "RunDir", "MetricLogger", "DistInfo", "StopRequest", "all_reduce_grads", "any_rank",
           "barrier", "broadcast_module", "setup_distributed", "teardown_distributed", "unwrap", "wrap_ddp",
           "EMA", "grad_norm", "BatchStream", "ResumableSampler", "gather_rng_states", "rng_state",
           "seed_everything", "set_rng_state"]


def _pick_device(device: str | None, local_rank: int):
    """Former private helper (``vqforge.devices.resolve_device``), kept for code that imports it."""
    return _resolve_device(device, local_rank)
