"""Devices and numeric precision, one vocabulary for every command and trainer.

``--device``: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N``.

``--precision`` (and the ``precision`` key of training configs) says what arithmetic runs, on every device:

========= ==========================================================================================
``auto``  bf16 where the device runs it natively (CUDA; CPUs with AVX512-BF16 / AMX), fp32 elsewhere
``bf16``  bf16 autocast (weights and optimiser state stay fp32); an error where the device lacks it
``fp32``  plain fp32 everywhere: the exact path, numerically identical to the original
========= ==========================================================================================
"""

from __future__ import annotations

import contextlib
import functools
from typing import Literal

import torch

from .io import VQForgeError

Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")


def resolve_device(device: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """``auto``/None -> ``cuda:local_rank`` when CUDA is available, else CPU; ``cuda`` -> ``cuda:local_rank``.

    Raises :class:`VQForgeError` for CUDA on a machine without it, or an unknown device name.
    """
    if device is None or device == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise VQForgeError(f"device {device!r}: unknown (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise VQForgeError(f"device {device!r}: CUDA is not available on this machine (use --device cpu)")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (``/proc/cpuinfo``, Linux), or None where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=None)
def cpu_bf16_supported() -> bool:
    """Whether this CPU runs oneDNN bf16 kernels natively (AVX512-BF16 / AMX).

    NOTE: oneDNN also says yes on AVX512 CPUs without AVX512-BF16, where it emulates bf16 (a VQGAN training step of
    the fashion config measured 2.2x slower than fp32 on such a Xeon); the CPU's flags decide where they are known.
    """
    try:
        onednn = torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
    flags = cpu_flags()
    return onednn and (flags is None or bool({"avx512_bf16", "amx_bf16"} & flags))


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matrix products natively."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_bf16_supported()


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype that ``precision`` (auto / bf16 / fp32) means on ``device``."""
    if precision not in PRECISIONS:
        raise VQForgeError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return torch.float32
    if bf16_native(device):
        return torch.bfloat16
    if precision == "bf16":
        raise VQForgeError(f"precision bf16: {device} has no native bf16 (use --precision fp32 or auto)")
    return torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """bf16 autocast on ``device`` when ``dtype`` is bf16; a no-op context for fp32."""
    if dtype == torch.bfloat16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
