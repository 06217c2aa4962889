"""Property-based (hypothesis): any size, absurd ones included, through the sampling job's planning either plans a
job whose estimated peak fits the budget or is refused in one line; planning itself allocates nothing of the size.

The examples run in a child process under an address-space limit (``RLIMIT_AS``): planning that allocated at the
size asked for (a token grid, a condition grid, a map) would fail there instead of taking the machine down.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("hypothesis", reason="hypothesis is a dev dependency (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(r"""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
    from hypothesis import example, given, settings, HealthCheck
    from hypothesis import strategies as st
    from vqforge.api import load
    from vqforge.commands.options import parse_hw
    from vqforge.io import VQForgeError
    from vqforge.memory import Budget, parse_bytes
    from vqforge.sampling.job import plan_job
    from vqforge.sampling.memory import job_bytes, peak
    from vqforge.sampling.request import SampleRequest

    models = {name: load(name).eval() for name in ("fashion", "landscapes")}
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    side = st.one_of(st.integers(1, 4096), st.integers(1, 10**12), st.sampled_from([100000, 1000000, 10**9]))
    size = st.one_of(st.builds(lambda h, w: f"{h}x{w}", side, side), st.builds(str, side),
                     st.builds(lambda t: f"{t}x", st.floats(0.01, 1e6)))
    seen = {"planned": 0, "refused": 0}
    start = None

    @settings(max_examples=int(sys.argv[1]), deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(sorted(models)), size=size, budget=st.sampled_from(["16MiB", "256MiB", "1GiB"]),
           batch=st.integers(1, 16), num=st.integers(1, 64), cfg=st.sampled_from([0.0, 2.0]),
           window=st.sampled_from(["window", "whole"]))
    # most random sizes are refused (off the downsampling grid, or absurd): one job that plans, whatever is drawn
    @example(name="fashion", size="2x", budget="1GiB", batch=2, num=3, cfg=2.0, window="window")
    @example(name="landscapes", size="1000000000000", budget="1GiB", batch=1, num=1, cfg=0.0, window="window")
    def check(name, size, budget, batch, num, cfg, window):
        model = models[name]
        request = SampleRequest(model, count=num, inputs=(None,), size=parse_hw(size, "--size", relative=True),
                                cfg=cfg, cond_encoding=window, batch_size=batch,
                                budget=Budget(parse_bytes(budget), f"--max-memory {budget}"), name=name)
        try:
            lay = plan_job(request).layout
        except VQForgeError as e:  # refused: one line
            assert "\n" not in str(e) and str(e).startswith(f"{name}: "), str(e)
            seen["refused"] += 1
            return
        need = peak(job_bytes(model, lay, batch, num, guided=cfg > 0))
        assert need <= parse_bytes(budget), (size, lay, need)
        seen["planned"] += 1

    start = rss()
    check()
    grown = rss() - start
    assert grown < 64 * 2**20, f"planning grew the process by {grown} bytes"
    assert seen["planned"] and seen["refused"], seen
    print(seen)
""")


def test_random_sizes_plan_within_the_budget_or_are_refused_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-c", CHILD, "150"], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                          "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 0, r.stderr[-3000:]
