"""Processes and devices of a training run: one process, or many under ``torchrun`` (DDP).

``setup_distributed(device)`` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and initialises
NCCL on CUDA, gloo on CPU (a single process otherwise); ``teardown_distributed()`` destroys the process
group. ``wrap_ddp`` / ``unwrap``, ``all_reduce_grads`` (modules that are not DDP-wrapped),
``broadcast_module`` (rank 0's weights to every rank), ``any_rank`` (a flag agreed over ranks) and
``barrier`` are the collectives the trainers use; each is a no-op in a single process.
:class:`StopRequest` turns SIGINT / SIGTERM into a request that all ranks honour together.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import nn

from ..devices import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str | None = None) -> DistInfo:
    """Initialise from ``torchrun``'s environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Without those variables (or WORLD_SIZE=1) this is a single process. NCCL is used on CUDA, gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1:
        import torch.distributed as tdist

        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not tdist.is_initialized():
            tdist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                     **({"device_id": dev} if dev.type == "cuda" else {}))
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=dev)


def teardown_distributed(dist: DistInfo | None = None) -> None:
    """Destroy the process group if one was created (no-op otherwise)."""
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def wrap_ddp(model: nn.Module, dist: DistInfo, **kwargs: Any) -> nn.Module:
    """Wrap ``model`` in DistributedDataParallel when running distributed (it also syncs rank 0's weights)."""
    if not dist.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DDP(model, device_ids=ids, **kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP (or compile) wrapper."""
    while hasattr(model, "module") and isinstance(getattr(model, "module"), nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def all_reduce_grads(params: Iterable[torch.Tensor], dist: DistInfo) -> None:
    """Average the gradients of ``params`` over all ranks (one flat all-reduce); no-op single-process."""
    if not dist.distributed:
        return
    import torch.distributed as tdist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    tdist.all_reduce(flat)
    flat /= dist.world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def broadcast_module(module: nn.Module, dist: DistInfo, buffers_only: bool = False) -> None:
    """Copy rank 0's parameters (unless ``buffers_only``) and buffers into ``module`` on every rank."""
    if not dist.distributed:
        return
    import torch.distributed as tdist

    tensors = ([] if buffers_only else list(module.parameters())) + list(module.buffers())
    with torch.no_grad():
        for t in tensors:
            tdist.broadcast(t.data, src=0)


def any_rank(flag: bool, dist: DistInfo) -> bool:
    """True everywhere if ``flag`` is True on any rank (so that all ranks leave a loop together)."""
    if not dist.distributed:
        return bool(flag)
    import torch.distributed as tdist

    t = torch.tensor([1.0 if flag else 0.0], device=dist.device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(dist: DistInfo) -> None:
    """Wait for all ranks (no-op single-process)."""
    if dist.distributed:
        import torch.distributed as tdist

        tdist.barrier()


class StopRequest:
    """Turn SIGINT / SIGTERM into a polite request to stop (checked by the loop), restoring handlers on exit.

    The first signal sets :attr:`requested`; the loop then saves a checkpoint and returns. A second SIGINT
    raises ``KeyboardInterrupt`` (a hard stop). Only installs handlers in the main thread.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> "StopRequest":
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def should_stop(self, dist: DistInfo) -> bool:
        """True on every rank when any rank received a signal (a collective under DDP)."""
        return any_rank(self.requested, dist)
