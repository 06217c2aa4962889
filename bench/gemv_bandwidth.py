"""How fast one decode-step matrix-vector product runs when its weight stays in cache: the packed bf16 oneDNN
product of vqforge's CPU decode path, plain bf16 and fp32 ``F.linear``, and int8 weight-only
(``torch.ops.aten._weight_int8pack_mm``), for the four weight shapes of the 8x512 benchmark GPT, at 1 and 2
threads. docs/benchmarks.md compares these in-cache rates with the rate a whole decode step reaches (which
streams all 51 MB of weights per token) to show that batch-1 sampling is bound by reading the weights.

    PYTHONPATH=src python bench/gemv_bandwidth.py
"""

import time

import torch
import torch.nn.functional as F


def per_call_us(f, n: int = 300) -> float:
    for _ in range(20):
        f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for n_out, n_in in ((1536, 512), (512, 512), (2048, 512), (512, 2048)):  # qkv, proj, fc1, fc2
            w = torch.randn(n_out, n_in) * 0.02
            x = torch.randn(1, n_in).bfloat16()
            packed = torch.ops.mkldnn._reorder_linear_weight(w.bfloat16().contiguous(), 1)
            us_packed = per_call_us(lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], ""))
            wb, wf, xf = w.bfloat16(), w.clone(), x.float()
            us_bf16 = per_call_us(lambda: F.linear(x, wb))
            us_fp32 = per_call_us(lambda: F.linear(xf, wf))
            scale = w.abs().amax(1) / 127
            wi = (w / scale[:, None]).round().to(torch.int8)
            us_int8 = per_call_us(lambda: torch.ops.aten._weight_int8pack_mm(x, wi, scale.bfloat16()))
            gbs = n_out * n_in * 2 / us_packed / 1e3
            print(f"{threads} thread(s) {n_out}x{n_in}: packed bf16 {us_packed:.1f} us ({gbs:.1f} GB/s), "
                  f"bf16 linear {us_bf16:.1f} us, fp32 linear {us_fp32:.1f} us, int8 weights {us_int8:.1f} us")


if __name__ == "__main__":
    main()
