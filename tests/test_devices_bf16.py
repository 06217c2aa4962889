"""Which CPUs count as running bf16 natively (``precision: auto`` picks bf16 there)."""

from __future__ import annotations

import torch

from vqforge import devices


def test_bf16_is_native_only_where_the_cpu_says_so(monkeypatch):
    """oneDNN reports bf16 on AVX512 CPUs that only emulate it (slower than fp32): the CPU's flags decide."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    try:
        for flags, native in ((set(), False), ({"avx512f", "avx512bw"}, False), ({"avx512_bf16"}, True),
                              ({"amx_bf16", "amx_tile"}, True), (None, True)):
            monkeypatch.setattr(devices, "cpu_flags", lambda flags=flags: flags)
            devices.cpu_bf16_supported.cache_clear()
            assert devices.cpu_bf16_supported() is native, flags
            assert (devices.resolve_precision("auto", torch.device("cpu")) == torch.bfloat16) is native
    finally:
        devices.cpu_bf16_supported.cache_clear()
