"""Generic training infrastructure shared by every vqforge training loop (VQGAN, transformer, ...).

Nothing here knows about a particular model; a training script combines these pieces in its own plain loop.

Distributed / devices
    ``DistInfo``                         rank, local_rank, world_size, device, ``is_main``, ``distributed``.
    ``setup_distributed(device=None)``   reads the ``torchrun`` env vars (RANK, WORLD_SIZE, LOCAL_RANK);
                                         initialises NCCL on CUDA, gloo on CPU; single process otherwise.
    ``teardown_distributed(dist)``       destroys the process group (safe to call always).
    ``wrap_ddp(model, dist)``            ``DistributedDataParallel`` when distributed, else the model itself.
    ``unwrap(model)``                    the module inside a DDP wrapper.
    ``all_reduce_grads(params, dist)``   average ``.grad`` over ranks (for modules that are not DDP-wrapped).
    ``broadcast_module(module, dist, buffers_only=False)``  copy rank 0's parameters/buffers to every rank.
    ``any_rank(flag, dist)``             True on every rank if ``flag`` is True on any rank.
    ``autocast(device, enabled)``        bf16 autocast on CUDA, a no-op elsewhere.
    ``scaled_lr(base_lr, batch_size, accumulation, world_size)``  the original's LR rule.

Randomness
    ``seed_everything(seed)``            python ``random``, numpy and torch (all devices).
    ``rng_state()`` / ``set_rng_state(state)``  capture/restore all three generators (plus CUDA).

Data order (exact resume)
    ``ResumableSampler(n, shuffle, seed, rank, world_size, drop_last, with_seeds)``: the order of epoch ``e``
        is a pure function of (seed, e); ``set_epoch(e)``, ``set_start(k)`` (skip the first ``k`` samples of
        this rank's share). With ``with_seeds=True`` it yields ``(index, sample_seed)`` so that a dataset can
        draw its augmentations from a generator seeded per sample (independent of workers and resumes).
        Under DDP each rank gets a disjoint slice, like ``DistributedSampler``.
    ``BatchStream(dataset, batch_size, sampler, workers, collate_fn=None, pin_memory=False)``: an endless
        iterator of batches over epochs; ``state_dict()`` -> ``{"epoch", "batch"}``, ``load_state_dict``
        resumes at the next unseen batch. ``batches_per_epoch``; ``epoch``.

Run directory and checkpoints
    ``RunDir(path)``: ``.path``, ``.config_path`` (``config.yaml``), ``.checkpoint_dir``, ``.last``
        (``checkpoints/last.pt``), ``write_config(cfg)``, ``save_checkpoint(ckpt, step, keep)`` (``last.pt``
        and, when ``keep``, ``step_NNNNNNN.pt``; both atomic), ``load_last()``, ``has_checkpoint()``.
    ``make_checkpoint(kind, model_config, model, step, optimizers, train_config, ema=None, rng=None,
        data=None, **extra)`` -> the checkpoint dict in vqforge's layout (``format_version``, ``kind``,
        ``model_config``, ``model``, ``ema``, ``step``, ``optimizers``, ``train_config``, ``rng``, ``data``,
        plus any extra entries), loadable by ``vqforge.load(RUN_DIR)``.
    ``gather_rng_states(dist)``          every rank's ``rng_state()`` (a list, on every rank).

Weights
    ``EMA(model, decay)``: ``update(model)``, ``state_dict()`` (keys of ``model.state_dict()``),
        ``load_state_dict(sd)``, ``copy_to(model)``.
    ``grad_norm(params)``                total L2 norm of the gradients.

Logging and progress (only rank 0 should create these with ``enabled=True``)
    ``MetricLogger(run_dir, enabled, purge_step=None)``: ``log(step, scalars)`` -> TensorBoard scalars
        (``tb/``) and one JSON line per call in ``metrics.jsonl``; ``close()``. Without tensorboard it
        warns once and writes ``metrics.jsonl`` only.
    Image grids: :func:`vqforge.imageio.save_grid`.
    ``progress_bar(total, initial, enabled, desc)`` -> tqdm bar (it/s and ETA).
    ``StopRequest()``: context manager; SIGINT/SIGTERM set ``.requested`` (a second SIGINT interrupts hard);
        the loop checks ``stop.should_stop(dist)`` (agreed over ranks), saves a checkpoint and returns.

A typical loop::

    dist = setup_distributed()
    seed_everything(cfg.seed + dist.rank)
    run = RunDir(out); run.write_config(cfg) if dist.is_main else None
    stream = BatchStream(ds, bs, ResumableSampler(len(ds), seed=cfg.seed, rank=dist.rank,
                                                  world_size=dist.world_size, with_seeds=True), workers)
    with StopRequest() as stop:
        for step in range(start, max_steps):
            batch = next(stream)
            ...
            if stop.should_stop(dist): break
    ckpt = make_checkpoint(..., rng=gather_rng_states(dist), data=stream.state_dict())
    if dist.is_main: run.save_checkpoint(ckpt, step, keep=False)
    teardown_distributed(dist)
"""

from __future__ import annotations

import contextlib
import copy
import io as _io
import json
import math
import os
import random
import signal
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ..config import dump_yaml, to_dict
from ..io import FORMAT_VERSION, VQForgeError, load_torch, write_bytes, write_text
from ..devices import cpu_bf16_supported, resolve_device

LAST = "last.pt"


# ============================================================================================ distributed
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


def _pick_device(device: str | None, local_rank: int) -> torch.device:
    return resolve_device(device, local_rank)


def setup_distributed(device: str | None = None) -> DistInfo:
    """Initialise from ``torchrun``'s environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Without those variables (or WORLD_SIZE=1) this is a single process. NCCL is used on CUDA, gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank)
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


def autocast(device: torch.device, enabled: bool = True, cpu_bf16: bool = False):
    """bf16 autocast on CUDA (when ``enabled``), and on CPUs with native bf16 when ``cpu_bf16`` is also set;
    a no-op context otherwise (fp32). Weights stay fp32 (the optimiser updates fp32 master weights)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if enabled and cpu_bf16 and device.type == "cpu" and cpu_bf16_supported():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def scaled_lr(base_lr: float, batch_size: int, accumulation: int = 1, world_size: int = 1) -> float:
    """The original's learning-rate rule: ``base_lr * batch_size * accumulation * world_size``."""
    return base_lr * batch_size * accumulation * world_size


# ============================================================================================ randomness
def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The state of every random generator a loop may use (torch CPU/CUDA, numpy, python)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        # python's state is a tuple of ints: stored as a tensor so that weights_only loading accepts it.
        "python": {"version": random.getstate()[0], "state": torch.tensor(random.getstate()[1], dtype=torch.int64),
                   "gauss": random.getstate()[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generators captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states(dist: DistInfo) -> list[dict[str, Any]]:
    """Every rank's :func:`rng_state`, in rank order (collective: call it on all ranks)."""
    mine = rng_state()
    if not dist.distributed:
        return [mine]
    import torch.distributed as tdist

    out: list[Any] = [None] * dist.world_size
    tdist.all_gather_object(out, mine)
    return out


# ============================================================================================ data order
class ResumableSampler(torch.utils.data.Sampler):
    """A deterministic, resumable, DDP-aware sampler.

    The order of epoch ``e`` is ``randperm(n)`` from a generator seeded with ``seed + e`` (or ``0..n-1``
    without shuffling), split over ranks like ``DistributedSampler`` (rank ``r`` takes positions
    ``r, r + world, ...``; with ``drop_last`` the tail that does not divide evenly is dropped, else it is
    padded by wrapping). ``set_start(k)`` skips the first ``k`` samples of this rank's share, for resuming
    mid-epoch. With ``with_seeds`` it yields ``(index, sample_seed)`` where ``sample_seed`` depends only on
    (seed, epoch, index).
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True, with_seeds: bool = False):
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.drop_last, self.with_seeds = rank, world_size, drop_last, with_seeds
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        self.start = start

    def per_rank(self) -> int:
        """Samples per rank per epoch."""
        if self.drop_last:
            return self.n // self.world_size
        return math.ceil(self.n / self.world_size)

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank() * self.world_size
        if total > len(order):  # pad by wrapping around
            order = (order * math.ceil(total / max(len(order), 1)))[:total]
        return order[:total][self.rank::self.world_size]

    def __iter__(self) -> Iterator[Any]:
        for idx in self._indices()[self.start:]:
            if self.with_seeds:
                # A per-sample seed that depends only on (seed, epoch, index): 63-bit mix, no python hash().
                s = (self.seed * 0x9E3779B1 + self.epoch * 0x85EBCA77 + idx * 0xC2B2AE3D) % (2**63 - 1)
                yield (idx, s)
            else:
                yield idx

    def __len__(self) -> int:
        return max(self.per_rank() - self.start, 0)


class BatchStream:
    """Endless batches over epochs with a resumable position.

    Wraps a DataLoader (``batch_size``, ``drop_last=True``, ``workers`` processes kept alive across epochs,
    its own generator so it never consumes the global torch RNG). ``state_dict()`` is ``{"epoch", "batch"}``:
    the epoch being read and how many of its batches were already handed out.
    """

    def __init__(self, dataset, batch_size: int, sampler: ResumableSampler, workers: int = 0,
                 collate_fn: Callable | None = None, pin_memory: bool = False, name: str = "data"):
        self.sampler, self.batch_size = sampler, batch_size
        self.batches_per_epoch = sampler.per_rank() // batch_size
        if self.batches_per_epoch < 1:
            raise VQForgeError(f"{name}: {sampler.n} samples are fewer than one batch of {batch_size} "
                               f"per process (x{sampler.world_size} processes); lower the batch size")
        kwargs: dict[str, Any] = {}
        if workers > 0:
            kwargs.update(persistent_workers=True, prefetch_factor=2)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
            collate_fn=collate_fn, pin_memory=pin_memory, generator=torch.Generator().manual_seed(sampler.seed),
            **kwargs)
        self.epoch, self.batch = 0, 0
        self._it: Iterator | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self._it = None

    def _start_epoch(self) -> None:
        if self.batch >= self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_start(self.batch * self.batch_size)
        self._it = iter(self.loader)

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self):
        if self._it is None or self.batch >= self.batches_per_epoch:
            self._start_epoch()
        assert self._it is not None
        batch = next(self._it)
        self.batch += 1
        return batch


# ============================================================================================ run directory
class RunDir:
    """A training run's folder: ``config.yaml``, ``checkpoints/``, ``metrics.jsonl``, ``tb/``, ``images/``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.yaml"
        self.checkpoint_dir = self.path / "checkpoints"
        self.last = self.checkpoint_dir / LAST
        self.images = self.path / "images"

    def write_config(self, cfg: Any) -> Path:
        """Write the resolved config (a dataclass or plain data) as ``config.yaml`` (atomic)."""
        return write_text(self.config_path, dump_yaml(cfg))

    def has_checkpoint(self) -> bool:
        return self.last.is_file()

    def save_checkpoint(self, ckpt: dict, step: int, keep: bool = False) -> Path:
        """Atomically write ``checkpoints/last.pt`` and, if ``keep``, also ``checkpoints/step_NNNNNNN.pt``."""
        buf = _io.BytesIO()
        torch.save(ckpt, buf)
        data = buf.getvalue()
        if keep:
            write_bytes(self.checkpoint_dir / f"step_{step:07d}.pt", data)
        return write_bytes(self.last, data)

    def load_last(self) -> dict:
        """Load ``checkpoints/last.pt`` (weights-only, one-line errors)."""
        if not self.last.is_file():
            raise VQForgeError(f"{self.path}: not a run directory with a checkpoint (no {self.last})")
        return load_torch(self.last)


def make_checkpoint(kind: str, model_config: Any, model: nn.Module, step: int,
                    optimizers: dict[str, torch.optim.Optimizer], train_config: Any,
                    ema: "EMA | None" = None, rng: Any = None, data: dict | None = None,
                    **extra: Any) -> dict:
    """The checkpoint dict in vqforge's layout (``vqforge.load(RUN_DIR)`` rebuilds the model from it)."""
    ckpt = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "model_config": to_dict(model_config),
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "ema": ema.state_dict() if ema is not None else None,
        "step": int(step),
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "train_config": to_dict(train_config),
        "rng": rng,
        "data": data,
    }
    ckpt.update(extra)
    return ckpt


# ============================================================================================ weights
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


def grad_norm(params: Iterable[torch.Tensor]) -> float:
    """Total L2 norm of the gradients of ``params`` (0 when none has a gradient)."""
    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


# ============================================================================================ logging
class MetricLogger:
    """Scalars to TensorBoard (``RUN_DIR/tb``) and to ``RUN_DIR/metrics.jsonl`` (one JSON object a line).

    ``metrics.jsonl`` is an append-only log (flushed every line); checkpoints and outputs are atomic, a log
    is not. Disabled loggers (other ranks) do nothing.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, purge_step: int | None = None):
        self.enabled = enabled
        self.tb = None
        self._file = None
        if not enabled:
            return
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge_step)
        except Exception as e:  # noqa: BLE001 - tensorboard is optional at run time
            warnings.warn(f"tensorboard unavailable ({e}); scalars go to {run_dir / 'metrics.jsonl'} only")
        self._file = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in scalars.items() if v is not None}
        if self.tb is not None:
            for k, v in clean.items():
                self.tb.add_scalar(k, v, step)
        assert self._file is not None
        self._file.write(json.dumps({"step": int(step), **clean}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None
        if self._file is not None:
            self._file.close()
            self._file = None


def progress_bar(total: int, initial: int = 0, enabled: bool = True, desc: str = "train"):
    """A tqdm bar with it/s and ETA on rank 0 (``disable=True`` elsewhere)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, dynamic_ncols=True,
                smoothing=0.05, file=sys.stderr)


# ============================================================================================ signals
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


def clone_state(obj: Any) -> Any:
    """A deep copy of a state dict (tensors cloned), e.g. to snapshot weights in tests."""
    return copy.deepcopy(obj)
