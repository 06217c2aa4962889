"""How fast the decode-step matrix-vector products of each weight format run on this CPU.

Two measurements, both at 1 and 2 threads:

* **in cache**: one weight matrix of each shape of the 8x512 benchmark GPT, called again and again (its weight
  stays in L2/L3): packed bf16 (oneDNN, vqforge's bf16 CPU path), plain bf16 and fp32 ``F.linear``, int8
  weight-only (``torch.ops.aten._weight_int8pack_mm``) and int4 weight-only
  (``torch.ops.aten._weight_int4pack_mm_for_cpu``, group 32);
* **by rows** (``--rows``): the fastest of 200 calls of fp32, packed bf16, int8 and int4 products for the
  fashion and 26M GPT shapes at 1, 4, 16 and 64 input rows (a markdown table: where the quantised kernels stop
  paying, ``vqforge.sampling.quantized.DENSE_ROWS``);
* **streamed** (``--stream``): 64 matrices of 512x2048 (fc2's shape) called one after the other, as a decode
  step reads its layers. In bf16 they are 134 MB, beyond any L3 of the project's CPUs, so each call reads its
  weight from memory; the per-matrix time and the bytes it read give the bandwidth each kernel reaches. Adds
  fbgemm's dynamic int8 (``torch.ao.quantization.quantize_dynamic``: int8 activations too) for comparison.

docs/benchmarks.md uses these to put the physical limit of a decode step (weight bytes per token / bandwidth)
beside the measured sampling rates. Always name the CPU (the script prints it): the fastest format differs
between CPU kinds (AMX, AVX512-BF16, plain AVX-512).

    PYTHONPATH=src python bench/gemv_bandwidth.py [--rows] [--stream] [--batch 1]
"""

import argparse
import platform
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


def cpu_name() -> str:
    """The CPU's model name and its matrix-relevant flags (amx, avx512_bf16, avx512_vnni)."""
    name, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not name.strip():
                    name = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    have = [f for f in ("amx_tile", "avx512_bf16", "avx512_vnni", "avx512f") if f in flags]
    return f"{name} ({', '.join(have) or 'no AVX-512'})"


def int8_weights(w: torch.Tensor):
    """Per-output-channel symmetric int8: (int8 (N, K), fp32 scales (N,))."""
    scale = w.abs().amax(1).clamp(min=1e-8) / 127
    return (w / scale[:, None]).round().clamp(-128, 127).to(torch.int8), scale


def int4_weights(w: torch.Tensor, group: int):
    """Group-wise asymmetric int4 packed for the CPU kernel: (packed, scales_and_zeros (K/g, N, 2))."""
    N, K = w.shape
    wg = w.reshape(N, K // group, group)
    lo, hi = wg.amin(-1), wg.amax(-1)  # (N, K/g)
    scale = ((hi - lo) / 15).clamp(min=1e-8)
    q = ((wg - lo[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32).reshape(N, K)
    sz = torch.stack((scale, lo + 8 * scale), -1).transpose(0, 1).contiguous()  # (K/g, N, 2)
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1), sz


def kernels(w: torch.Tensor, x: torch.Tensor, dynamic: bool = False) -> dict:
    """name -> (call, weight bytes) for one weight ``w`` (N, K) and bf16 input ``x`` (B, K)."""
    N, K = w.shape
    packed = torch.ops.mkldnn._reorder_linear_weight(w.bfloat16().contiguous(), 1)
    wb, wf, xf = w.bfloat16(), w.clone(), x.float()
    wi, s8 = int8_weights(w)
    s8b = s8.bfloat16()
    out = {"packed bf16": (lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], ""), 2 * N * K),
           "bf16 linear": (lambda: F.linear(x, wb), 2 * N * K),
           "fp32 linear": (lambda: F.linear(xf, wf), 4 * N * K),
           "int8 bf16-act": (lambda: torch.ops.aten._weight_int8pack_mm(x, wi, s8b), N * K + 2 * N),
           "int8 fp32-act": (lambda: torch.ops.aten._weight_int8pack_mm(xf, wi, s8), N * K + 4 * N)}
    for g in (32, 128):
        p4, sz = int4_weights(w, g)
        szb = sz.bfloat16()
        out[f"int4 g{g} bf16-act"] = (lambda p4=p4, szb=szb, g=g: torch.ops.aten._weight_int4pack_mm_for_cpu(
            x, p4, g, szb), N * K // 2 + 4 * N * K // g)
        out[f"int4 g{g} fp32-act"] = (lambda p4=p4, sz=sz, g=g: torch.ops.aten._weight_int4pack_mm_for_cpu(
            xf, p4, g, sz), N * K // 2 + 8 * N * K // g)
    if dynamic:
        lin = torch.nn.Linear(K, N, bias=False)
        lin.weight.data.copy_(w)
        dq = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, torch.qint8)
        out["fbgemm dynamic int8"] = (lambda: dq(xf), N * K)
    return out


def in_cache(batch: int) -> None:
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for n_out, n_in in ((1536, 512), (512, 512), (2048, 512), (512, 2048)):  # qkv, proj, fc1, fc2
            w = torch.randn(n_out, n_in) * 0.02
            x = torch.randn(batch, n_in).bfloat16()
            times = {name: per_call_us(f) for name, (f, _) in kernels(w, x).items()}
            print(f"{threads} thread(s) {n_out}x{n_in} in cache: "
                  + ", ".join(f"{k} {v:.1f} us" for k, v in times.items()))


def streamed(batch: int, n: int = 64) -> None:
    ws = [torch.randn(512, 2048) * 0.02 for _ in range(n)]
    x = torch.randn(batch, 2048).bfloat16()
    sets = [kernels(w, x, dynamic=True) for w in ws]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name in sets[0]:
            calls = [s[name][0] for s in sets]
            nbytes = sets[0][name][1]

            def all_calls():
                for c in calls:
                    c()
            us = per_call_us(all_calls, n=20) / n
            print(f"{threads} thread(s) streamed 64 x 512x2048, batch {batch}: {name:20s} {us:7.1f} us/matrix "
                  f"({nbytes / us / 1e3:5.1f} GB/s of weights)")


def fastest_us(f, n: int = 200) -> float:
    for _ in range(5):
        f()
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best * 1e6


def by_rows() -> None:
    torch.set_num_threads(1)
    print("| weight (out x in) | rows | fp32 | packed bf16 | int8 | int4 g32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for n_out, n_in in ((768, 256), (1536, 512), (2048, 512), (512, 2048)):
        w = torch.randn(n_out, n_in) * 0.02
        wi, s8 = int8_weights(w)
        p4, sz = int4_weights(w, 32)
        s8b, szb = s8.bfloat16(), sz.bfloat16()
        packed = torch.ops.mkldnn._reorder_linear_weight(w.bfloat16().contiguous(), 1)
        for rows in (1, 4, 16, 64):
            x = torch.randn(rows, n_in)
            xb = x.bfloat16()
            us = [fastest_us(lambda: F.linear(x, w)),
                  fastest_us(lambda: torch.ops.mkldnn._linear_pointwise(xb, packed, None, "none", [], "")),
                  fastest_us(lambda: torch.ops.aten._weight_int8pack_mm(xb, wi, s8b)),
                  fastest_us(lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(xb, p4, 32, szb))]
            print(f"| {n_out} x {n_in} | {rows} | " + " | ".join(f"{u:.0f}" for u in us) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stream", action="store_true", help="also stream 64 matrices from memory")
    ap.add_argument("--rows", action="store_true", help="only the by-rows table (1 thread)")
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    print(f"CPU: {cpu_name()}; torch {torch.__version__}")
    if args.rows:
        by_rows()
        return
    in_cache(args.batch)
    if args.stream:
        streamed(args.batch)


if __name__ == "__main__":
    main()
