"""Timing and memory for side-by-side benchmarks: the machine, interleaved repeats, peak memory per run.

Peak memory of one implementation in a process that holds several: ``held`` (the bytes of the tensors it keeps
between runs: weights, gradients, optimiser state, caches) plus the rise of the device's peak over what was in
use when its run began (activations and workspace). On CUDA the peak is ``torch.cuda.max_memory_allocated``
(reset before each run); on the CPU it is the process's resident set high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``; glibc is asked to return freed memory first so one run's leftovers do not hide the
next run's growth). Where neither works the peak is reported as None. Memory is measured on one extra run after
the timed ones, so that neither the trimming nor the reset touches a timed run.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

MiB = 1024 * 1024


# ============================================================================================ the machine
def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The matrix/bf16 features of this CPU that matter to the CPU fast paths (AVX512-BF16, AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return sorted(f for f in set(flags) if f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx2"))


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def environment(device: torch.device) -> dict:
    """What a result must say about where it was measured."""
    env = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_features": cpu_features(),
        "load_average": load_average(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = props.name
        env["gpu_memory_gib"] = round(props.total_memory / 1024**3, 1)
        env["cuda"] = torch.version.cuda
    return env


# ============================================================================================ memory
_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL | None:
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:
            return None
    return _LIBC


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{field_name}:\s+(\d+) kB", f.read(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


class PeakMemory:
    """The rise of the device's peak memory over its use at ``start()``, in bytes (None if unmeasurable)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.base = 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        libc = _libc()
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)  # freed heap pages back to the OS: the rise then counts this run's own growth
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
        except OSError:
            self.base = -1
            return
        self.base = (_status_kib("VmRSS") or 0) * 1024

    def rise(self) -> int | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.base
        hwm = _status_kib("VmHWM")
        if self.base < 0 or hwm is None:
            return None
        return max(hwm * 1024 - self.base, 0)


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and shared weights counted once)."""
    seen, total = set(), 0
    for t in tensors:
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            continue
        s = t.untyped_storage()
        if s.data_ptr() in seen:
            continue
        seen.add(s.data_ptr())
        total += s.nbytes()
    return total


def held_tensors(*objs) -> list[torch.Tensor]:
    """Every tensor kept by modules (parameters, their gradients, buffers) and optimisers (state)."""
    out: list[torch.Tensor] = []
    for obj in objs:
        if isinstance(obj, torch.nn.Module):
            for p in obj.parameters():
                out.append(p)
                if p.grad is not None:
                    out.append(p.grad)
            out.extend(obj.buffers())
        elif isinstance(obj, torch.optim.Optimizer):
            for state in obj.state.values():
                out.extend(v for v in state.values() if isinstance(v, torch.Tensor))
        elif isinstance(obj, torch.Tensor):
            out.append(obj)
    return out


def is_fused(opt: torch.optim.Optimizer) -> bool:
    """Whether ``opt`` runs torch's fused kernel (what a contestant's note says it ran, not what it asked for)."""
    return bool(opt.defaults.get("fused"))


# ============================================================================================ timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Contestant:
    """One implementation of a row's work: ``run()`` does the work once (returns nothing).

    ``held()`` lists the tensors it keeps between runs (for peak memory). ``warmup``: calls after the first
    before timing starts (a CUDA-graph path records its graphs on the calls after the compiling one).
    ``compile_s`` (the first call's time) is filled in by the runner, never part of the timed runs.
    """

    name: str
    run: Callable[[], object]
    held: Callable[[], list[torch.Tensor]] = lambda: []
    note: str = ""
    warmup: int = 0
    compile_s: float | None = None
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    peak_bytes: int | None = None


def measure_peak(c: Contestant, device: torch.device) -> None:
    """One untimed run of ``c`` that sets ``c.peak_bytes`` (held tensors + the device peak's rise)."""
    mem = PeakMemory(device)
    mem.start()
    c.run()
    rise = mem.rise()
    c.peak_bytes = None if rise is None else rise + tensor_bytes(c.held())


def interleave(contestants: list[Contestant], device: torch.device, repeat: int, warmup: int = 1,
               budget_s: float | None = None, memory: bool = True) -> None:
    """Warm each contestant up, then time ``repeat`` rounds, each running every contestant once in turn (so
    that load from other processes hits all alike), and (``memory``) measure each one's peak memory.

    Fills ``times``, ``cpu_times`` and ``peak_bytes``; with ``budget_s``, stops timing after the round in which
    the budget ran out (at least one timed round always runs). On CUDA the peak is read during the first timed
    round (resetting the allocator's statistics costs nothing); on the CPU one extra, untimed run each does it.
    """
    t_start = time.perf_counter()
    for c in contestants:
        for _ in range(warmup):
            c.run()
        sync(device)
    on_cuda = device.type == "cuda"
    for r in range(repeat):
        for c in contestants:
            mem = PeakMemory(device) if memory and on_cuda and r == 0 else None
            if mem is not None:
                mem.start()
            sync(device)
            t, cpu = time.perf_counter(), time.process_time()
            c.run()
            sync(device)
            c.times.append(time.perf_counter() - t)
            c.cpu_times.append(time.process_time() - cpu)
            if mem is not None:
                c.peak_bytes = mem.rise() + tensor_bytes(c.held())
        if budget_s is not None and time.perf_counter() - t_start > budget_s:
            break
    if memory and not on_cuda:
        for c in contestants:
            measure_peak(c, device)


def summary(times: list[float], cpu_times: list[float] | None = None) -> dict:
    """Median and spread of a contestant's timed runs (seconds), and the median CPU time of the process over a
    run (all threads; on a shared machine it moves far less than wall time, most usefully at one thread)."""
    out = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": len(times)}
    if cpu_times:
        out["cpu_median_s"] = statistics.median(cpu_times)
    return out


def profile(c: Contestant, device: torch.device, top: int = 12) -> list[dict]:
    """One profiled run of ``c``: the ``top`` operators by self time (device time on CUDA), with their share."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        c.run()
        sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
    total = sum(getattr(e, key) for e in events) or 1.0
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    return [{"op": e.key, "self_ms": round(getattr(e, key) / 1e3, 2), "share": round(getattr(e, key) / total, 3),
             "calls": e.count} for e in events[:top]]
