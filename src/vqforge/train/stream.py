"""Data order and randomness: what exact resumption needs.

``seed_everything(seed)`` seeds python, numpy and torch; ``rng_state()`` / ``set_rng_state(state)`` capture
and restore all of them (weights-only loadable); ``gather_rng_states(dist)`` collects every rank's.

:class:`ResumableSampler` makes the order of epoch ``e`` a pure function of (seed, e), split over DDP
ranks, and can yield a per-sample seed so that a dataset draws its augmentations independently of worker
processes and resumes. :class:`BatchStream` is an endless, resumable iterator of batches over epochs;
:class:`ShardBatchStream` is the same over tar shards (:class:`vqforge.data.shards.ShardStream`).
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..io import VQForgeError
from .distributed import DistInfo


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


class ShardBatchStream:
    """Endless batches of a :class:`~vqforge.data.shards.ShardStream` over epochs, with a resumable position.

    The position is per process and per worker: ``{"epoch", "consumed": [samples each worker has handed out this
    epoch]}``; :meth:`state_dict` gathers every rank's (collective: call it on all ranks) and
    :meth:`load_state_dict` takes this rank's, so a resumed run reads on from the sample after the last one the
    checkpoint counted. Batches are a worker's own samples; the last batch of a worker's share in an epoch may be
    smaller, so that every sample is used once per epoch. ``last_keys`` names the samples of the latest batch.
    """

    def __init__(self, dataset, batch_size: int, workers: int = 0, dist: DistInfo | None = None,
                 collate_fn: Callable | None = None, pin_memory: bool = False, name: str = "data"):
        self.dataset, self.batch_size, self.workers, self.dist, self.name = dataset, batch_size, workers, dist, name
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                                  drop_last=False, collate_fn=collate_fn, pin_memory=pin_memory)
        self.epoch = 0
        self.consumed = [0] * max(workers, 1)
        self.last_keys: list[str] = []
        self._it: Iterator | None = None

    def state_dict(self) -> dict[str, Any]:
        mine = {"epoch": self.epoch, "consumed": list(self.consumed)}
        ranks: list[Any] = [mine]
        if self.dist is not None and self.dist.distributed:
            import torch.distributed as tdist

            ranks = [None] * self.dist.world_size
            tdist.all_gather_object(ranks, mine)
        return {"shards": ranks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ranks = state.get("shards") if isinstance(state, dict) else None
        rank = self.dist.rank if self.dist is not None else 0
        if not isinstance(ranks, list) or len(ranks) <= rank:
            raise VQForgeError(f"{self.name}: the checkpoint's data position is not one of a sharded run, or was "
                               f"saved with fewer processes; resume with the data and process count it was saved with")
        mine = ranks[rank]
        consumed = [int(c) for c in mine["consumed"]]
        if len(consumed) != len(self.consumed):
            raise VQForgeError(f"{self.name}: the checkpoint kept the place of {len(consumed)} data worker(s) per "
                               f"process, this run has {len(self.consumed)}; resume with the train.workers it was "
                               f"saved with")
        self.epoch, self.consumed = int(mine["epoch"]), consumed
        self._it = None

    def _start(self) -> None:
        self.dataset.set_epoch(self.epoch)
        self.dataset.set_skip(self.consumed)
        self._it = iter(self.loader)

    def __iter__(self) -> "ShardBatchStream":
        return self

    def __next__(self):
        if self._it is None:
            self._start()
        assert self._it is not None
        try:
            batch = next(self._it)
        except StopIteration:
            self.epoch, self.consumed = self.epoch + 1, [0] * len(self.consumed)
            self._start()
            try:
                batch = next(self._it)
            except StopIteration:
                raise VQForgeError(f"{self.name}: no readable samples in this process's shards") from None
        worker, pos = batch.pop("__worker__"), batch.pop("__pos__")
        self.consumed[int(worker[0])] = int(pos.max()) + 1
        self.last_keys = list(batch.pop("__key__"))
        return batch
