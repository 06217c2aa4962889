"""Memory budgets: how much memory one job may take, and the one-line refusal of a job that would take more.

Every command that allocates in proportion to a size the user chooses (``sample`` / ``complete --size``,
``encode --size``, ``reconstruct --size``, ``evaluate recon --size``, ``train vqgan train.image_size``, the web
app's sizes) estimates the job's peak memory before allocating anything of that size
(:mod:`vqforge.models.footprint` holds the estimates, derived from the model's config) and compares it with a
:class:`Budget`:

* by default a fraction (:data:`DEFAULT_FRACTION`) of the memory available to this process: the smallest of the
  kernel's ``MemAvailable``, the room left under a cgroup (container) limit and the room left under an address
  space limit (``ulimit -v``, ``RLIMIT_AS``); on a CUDA device, the device's free memory;
* ``--max-memory 4GiB`` (:func:`parse_bytes`) sets it outright.

A job over budget is refused by :func:`refusal`: one line naming the size asked for, the estimate, the budget and
the largest size that fits (:func:`largest_fitting` finds it without allocating). :func:`check_images_fit` does all
of that for a job on image files, from their headers alone.
"""

from __future__ import annotations

import os
import re
import resource
from dataclasses import dataclass
from typing import Callable

from .io import VQForgeError

#: the share of the available memory that one job may take when no --max-memory is given
DEFAULT_FRACTION = 0.5

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


class OverBudget(VQForgeError, ValueError):
    """A job whose estimated peak memory exceeds the budget: one line (see :func:`refusal`). Also a ValueError,
    so the library's callers that turn ValueErrors into one-line errors report it as they report other plans."""


def parse_bytes(text: str) -> int:
    """'4GiB', '512MB', '2g', '1.5 GiB' or a plain number of bytes -> bytes (ValueError naming the form)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"{text!r}: expected an amount of memory such as 4GiB, 512MiB or 2GB")
    return int(float(m.group(1)) * _UNITS[unit])


def format_bytes(n: float) -> str:
    """Bytes as a short binary amount: '512 MiB', '4.0 GiB', '3.2 TiB'."""
    for unit, size in (("PiB", 1024**5), ("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if unit != "MiB" else f"{n / size:.0f} {unit}"
    return f"{max(0, int(n)) / 1024:.0f} KiB"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room() -> int | None:
    """Room left under a cgroup v2 memory limit (containers), or None without one."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(open("/sys/fs/cgroup/memory.current").read().strip()))
    except (OSError, ValueError):
        return None


def _address_space_room() -> int | None:
    """Room left under an address-space limit (``ulimit -v``, RLIMIT_AS), or None without one."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, ValueError, StopIteration):
        size = 0
    return max(0, soft - size)


def available_bytes(device=None) -> int:
    """Memory this process can still take: on CUDA the device's free memory; else the smallest of MemAvailable,
    the room under a cgroup limit and the room under an address-space limit (physical pages when none is known)."""
    if device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    known = [v for v in (_meminfo_available(), _cgroup_room(), _address_space_room()) if v is not None]
    if not known:
        known = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    return min(known)


@dataclass(frozen=True)
class Budget:
    """The most memory one job may take (``bytes``) and where that number came from (``source``, for messages)."""

    bytes: int
    source: str

    @classmethod
    def default(cls, device=None, fraction: float = DEFAULT_FRACTION) -> "Budget":
        """:data:`DEFAULT_FRACTION` of :func:`available_bytes`, measured now."""
        avail = available_bytes(device)
        return cls(int(avail * fraction), f"{fraction:.0%} of the {format_bytes(avail)} available; --max-memory "
                                          f"sets it")

    @classmethod
    def from_option(cls, text: str | None, device=None, option: str = "--max-memory") -> "Budget":
        """``--max-memory TEXT`` (VQForgeError naming the option when malformed), or :meth:`default` when None."""
        if text is None:
            return cls.default(device)
        try:
            return cls(parse_bytes(text), f"{option} {text}")
        except ValueError as e:
            raise VQForgeError(f"{option} {e}") from None

    def __str__(self) -> str:
        return f"{format_bytes(self.bytes)} ({self.source})"


def largest_fitting(estimate: Callable[[int], float], budget: int, lo: int, hi: int) -> int | None:
    """The largest ``n`` in [lo, hi] with ``estimate(n) <= budget`` (``estimate`` grows with ``n``), by bisection:
    only the estimate runs, nothing of size ``n`` is allocated. None when even ``lo`` does not fit."""
    if hi < lo or estimate(lo) > budget:
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def refusal(what: str, need: float, budget: Budget, largest: str | None, parts: str = "") -> OverBudget:
    """The one-line error for a job over budget: ``what`` (e.g. 'size 100000x100000'), the estimate (and what it
    counts), the budget, and the largest size that fits (``largest``; None: none does)."""
    counted = f" ({parts})" if parts else ""
    fit = f"the largest that fits is {largest}" if largest else "no size fits"
    return OverBudget(f"{what} needs about {format_bytes(need)} of memory{counted}, more than the budget of "
                      f"{budget}; {fit}")


def pixels_after(path, size: int | None, multiple_of: int = 1) -> tuple[int, int]:
    """The (H, W) an image file becomes with its smallest side resized to ``size`` (None: kept) and cropped to a
    multiple of ``multiple_of``, from its header alone (nothing decoded; a file PIL cannot open counts as a
    ``size`` square: its own error comes when it is read)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - reported by the reader, in its words
        w = h = size or multiple_of
    if size:
        s = size / min(w, h)
        h, w = max(size, round(h * s)), max(size, round(w * s))
    return max(multiple_of, h - h % multiple_of), max(multiple_of, w - w % multiple_of)


def check_images_fit(files, size: int | None, multiple_of: int, need, budget: Budget, option: str = "--size") -> None:
    """Refuse (one line, :class:`OverBudget`) a job on image ``files`` whose largest image, at ``size`` (the
    smallest side; None: each file's own), needs more than ``budget``: ``need((H, W))`` bytes each; the refusal
    names the file, its size and the largest ``option`` that fits."""
    sized = [(pixels_after(p, size, multiple_of), p) for p in files]
    (hw, path) = max(sized, key=lambda item: item[0][0] * item[0][1])
    if need(hw) <= budget.bytes:
        return
    short = min(hw)

    def at(side: int) -> float:
        s = side * multiple_of / short
        return need((max(multiple_of, round(hw[0] * s)), max(multiple_of, round(hw[1] * s))))

    fit = largest_fitting(at, budget.bytes, 1, max(1, short // multiple_of))
    what = f"{path}: {hw[0]}x{hw[1]} px" + (f" ({option} {size})" if size else "")
    raise refusal(what, need(hw), budget, None if fit is None else f"{option} {fit * multiple_of}")
