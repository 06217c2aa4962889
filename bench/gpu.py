"""The GPU benchmark in one call (issue 15): the `gpu` suite side by side with the original, plus correctness checks.

Made for the lent device machine (one H200, torch from its image, nothing downloadable): one command, well under
its 10-minute limit, that leaves a JSON, a log and the rendered tables under ``$OUT``. Prepare here once::

    make bench-wheels            # .whl/: the original's wheel (taming-transformers-rom1504 0.0.6, 51 kB)

then run it there (the device tool, ``carry: [".whl"]``, ``timeout_s: 600``)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl || exit; export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1; python3 bench/gpu.py --out $OUT

What it does, in this order, against a wall-clock deadline (``--deadline``, default 480 s):

1. the machine: ``nvidia-smi``, torch/CUDA versions, and two ceilings measured on the card (device-to-device copy
   bandwidth; a bf16 8192³ matrix product) to read the rows against;
2. the checks of :mod:`vqforge.benchmarks.checks` (compiled decode step vs eager greedy tokens on a 16x16 grid; bf16 vs
   fp32 training losses; sliding window with the compiled step), ~1-2 min;
3. the `gpu` suite's rows, most important first, each skipped when its estimated cost no longer fits;
4. writes ``gpu.json`` (everything), ``gpu.md`` (the tables, as docs/benchmarks.md shows them), ``gpu.log``.

Copy those three into ``bench/results/`` and run ``vqforge bench --render bench/results/gpu.json --into
docs/benchmarks.md`` to update the GPU section. ``--quick`` runs everything at toy sizes (also on a CPU): that is
what tests/test_bench.py does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # vqforge from this tree

import torch  # noqa: E402


class Tee:
    """Print to stdout and append to a log file."""

    def __init__(self, path: Path):
        self.file = path.open("a")

    def __call__(self, text: str) -> None:
        print(text, flush=True)
        self.file.write(text + "\n")
        self.file.flush()


def ceilings(device: torch.device) -> dict:
    """Copy bandwidth (bytes read + written per second) and bf16 matrix-product rate, measured with CUDA events."""
    if device.type != "cuda":
        return {}
    out = {}
    a = torch.empty(2 * 1024**3 // 2, dtype=torch.bfloat16, device=device).normal_()  # 2 GiB
    b = torch.empty_like(a)
    out["copy_tb_s"] = round(2 * a.numel() * 2 / _time_cuda(lambda: b.copy_(a)) / 1e12, 2)
    del a, b
    n = 8192
    x = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    y = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    out["bf16_matmul_tflop_s"] = round(2 * n**3 / _time_cuda(lambda: x @ y) / 1e12, 1)
    return out


def _time_cuda(fn, reps: int = 10) -> float:
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / reps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu-bench-out"), help="folder for gpu.json/.md/.log")
    ap.add_argument("--deadline", type=float, default=480.0, help="seconds for the whole run (default 480)")
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds per row (each row also has a time budget)")
    ap.add_argument("--quick", action="store_true", help="toy sizes (a test of this script, also on a CPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rows", nargs="+", default=None, help="only these suite rows")
    ap.add_argument("--no-checks", action="store_true")
    args = ap.parse_args()

    from vqforge.benchmarks.checks import run_checks
    from vqforge.benchmarks.render import render
    from vqforge.benchmarks.runner import run_suite
    from vqforge.devices import resolve_device

    # One process compiles the decode step for several models and batch sizes (checks and rows): let dynamo keep
    # them all rather than fall back to eager after its default 8 recompiles of one function.
    import torch._dynamo

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 64)

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Tee(out / "gpu.log")
    device = resolve_device(args.device)
    if device.type == "cuda":
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, check=False)
        log(smi.stdout.strip() or smi.stderr.strip())
    log(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda {torch.version.cuda}, device {device}")
    extra = {"ceilings": ceilings(device)}
    log(f"ceilings: {extra['ceilings']}")
    if not args.no_checks:
        extra["checks"] = run_checks(device, quick=args.quick, log=log)
    left = args.deadline - (time.perf_counter() - t0)
    result = run_suite("gpu", device, repeat=args.repeat, quick=args.quick, only=args.rows, deadline_s=left, log=log)
    result.update(extra)
    result["command"] = "python3 bench/gpu.py --out $OUT" + (" --quick" if args.quick else "")
    result["total_wall_s"] = round(time.perf_counter() - t0, 1)
    (out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu.md").write_text(render(result, result["command"]))
    log(render(result, result["command"]))
    failed = [r["id"] for r in result["rows"] if "error" in r] + \
             [c["check"] for c in extra.get("checks", []) if not c["ok"]]
    log(f"done in {result['total_wall_s']:.0f} s; " + (f"FAILED: {', '.join(failed)}" if failed else "all rows and checks ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
