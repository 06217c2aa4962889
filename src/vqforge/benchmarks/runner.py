"""Running a suite: build each row, time its contestants interleaved, and collect one JSON-ready result."""

from __future__ import annotations

import gc
import time
import traceback
from typing import Callable

import torch

from . import original
from .measure import MiB, environment, interleave, profile, summary, sync
from .rows import ORIGINAL, Row
from .suites import SUITES, RowPlan

FORMAT = "vqforge-bench/1"


def _throughput(row: Row, median_s: float) -> float:
    return row.items / median_s


def row_result(row: Row, wall_s: float) -> dict:
    """A timed row as JSON: per contestant its times, throughput, peak memory and compile/first-run time, and
    each vqforge contestant's ratio to the original (speed: original time / its time; memory: its peak /
    the original's peak)."""
    res: dict = {"id": row.id, "work": row.work, "unit": row.unit, "items": row.items, "target": row.target,
                 "notes": row.notes, "agreement": row.agreement, "wall_s": round(wall_s, 1), "contestants": {}}
    for c in row.contestants:
        s = summary(c.times, c.cpu_times)
        entry = {**{k: round(v, 5) if isinstance(v, float) else v for k, v in s.items()},
                 "throughput": round(_throughput(row, s["median_s"]), 2) if row.unit != "s/step" else None,
                 "peak_mib": None if c.peak_bytes is None else round(c.peak_bytes / MiB, 1),
                 "first_run_s": None if c.compile_s is None else round(c.compile_s, 3),
                 "note": c.note}
        res["contestants"][c.name] = entry
    orig = res["contestants"].get(ORIGINAL)
    if orig is not None:
        for name, entry in res["contestants"].items():
            if name == ORIGINAL:
                continue
            entry["speedup"] = round(orig["median_s"] / entry["median_s"], 3)
            if orig.get("cpu_median_s") and entry.get("cpu_median_s"):
                entry["cpu_speedup"] = round(orig["cpu_median_s"] / entry["cpu_median_s"], 3)
            if orig["peak_mib"] and entry["peak_mib"] is not None:
                entry["memory_ratio"] = round(entry["peak_mib"] / orig["peak_mib"], 3)
    return res


def _timed_first_runs(row: Row, device: torch.device) -> None:
    """Run each contestant once (and ``warmup`` more times), recording that first call's time as ``compile_s``
    (it includes any compiling and one-time set-up; the report shows first run minus median as compile time)."""
    for c in row.contestants:
        t = time.perf_counter()
        c.run()
        sync(device)
        c.compile_s = time.perf_counter() - t
        for _ in range(c.warmup):
            c.run()
        sync(device)


def run_row(plan: RowPlan, device: torch.device, with_original: bool, repeat: int, log: Callable[[str], None],
            profile_top: int = 0) -> dict:
    """Build, warm up and time one row; never raises (a failing row is reported with its error).

    profile_top: after timing, one profiled run per contestant, keeping its ``profile_top`` costliest operators.
    """
    t0 = time.perf_counter()
    try:
        row = plan.build(device, with_original)
        row.id = plan.id
        if plan.first_run:
            _timed_first_runs(row, device)
        interleave(row.contestants, device, repeat=repeat, warmup=0, budget_s=plan.budget_s, memory=plan.memory)
        profiles = {c.name: profile(c, device, profile_top) for c in row.contestants} if profile_top else None
        result = row_result(row, time.perf_counter() - t0)
        if profiles:
            result["profile"] = profiles
    except Exception as e:  # a row that breaks must not cost the others their numbers
        log(f"{plan.id}: FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        log(traceback.format_exc())
        return {"id": plan.id, "error": f"{type(e).__name__}: {e}", "wall_s": round(time.perf_counter() - t0, 1)}
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    log(format_row(result))
    for name, ops in result.get("profile", {}).items():
        log(f"  profile {name}: " + "; ".join(f"{o['op']} {o['share']:.0%}" for o in ops))
    return result


def format_row(res: dict) -> str:
    """One line per contestant, for the log."""
    lines = [f"{res['id']}: {res['work']} ({res['wall_s']} s)"]
    for name, c in res["contestants"].items():
        speed = f"{c['throughput']} {res['unit']}" if c["throughput"] is not None else f"{c['median_s']:.3f} s"
        extra = f"  x{c['speedup']:.2f} (cpu time x{c.get('cpu_speedup', 0):.2f})" if "speedup" in c else ""
        mem = f"  peak {c['peak_mib']:.0f} MiB" if c["peak_mib"] is not None else ""
        cpu = f", cpu {c['cpu_median_s']:.3f} s" if c.get("cpu_median_s") else ""
        lines.append(f"  {name:14s} median {c['median_s']:.4f} s{cpu} ({speed}, {c['runs']} runs){extra}{mem}  "
                     f"[{c['note']}]")
    return "\n".join(lines)


def run_suite(suite: str, device: torch.device, repeat: int = 3, quick: bool = False, only: list[str] | None = None,
              deadline_s: float | None = None, with_original: bool = True,
              log: Callable[[str], None] = print, profile_top: int = 0) -> dict:
    """Run suite ``suite`` (``cpu`` / ``gpu``) on ``device``; return the JSON-ready result.

    only: row ids to run (default all). deadline_s: wall-clock budget for the whole suite; a row whose
    ``cost_s`` no longer fits is skipped (and listed). with_original: time the original when importable.
    profile_top: also profile one run of each contestant (see :func:`run_row`).
    """
    plans = SUITES[suite](quick)
    if only:
        unknown = sorted(set(only) - {p.id for p in plans})
        if unknown:
            from ..io import VQForgeError

            raise VQForgeError(f"bench: unknown row(s) {', '.join(unknown)} in suite {suite} "
                               f"(rows: {', '.join(p.id for p in plans)})")
        plans = [p for p in plans if p.id in only]
    why_not = original.available() if with_original else "not asked for (--no-original)"
    env = environment(device)
    log(f"vqforge bench --suite {suite}{' --quick' if quick else ''}: {env['device']} ({env.get('gpu', env['cpu'])}), "
        f"torch {env['torch']}, {env['threads']} threads, load average {env['load_average']}; original: "
        f"{'yes' if why_not is None else why_not}")
    t0 = time.perf_counter()
    rows, skipped = [], []
    for plan in plans:
        left = None if deadline_s is None else deadline_s - (time.perf_counter() - t0)
        if left is not None and left < plan.cost_s:
            skipped.append(plan.id)
            log(f"{plan.id}: skipped ({left:.0f} s left of the deadline, the row needs about {plan.cost_s:.0f} s)")
            continue
        rows.append(run_row(plan, device, why_not is None, repeat, log, profile_top))
    env["load_average_end"] = environment(device)["load_average"]
    return {"format": FORMAT, "suite": suite, "quick": quick, "repeat": repeat, "environment": env,
            "original": original.PACKAGE if why_not is None else None, "original_missing": why_not,
            "rows": rows, "skipped": skipped, "wall_s": round(time.perf_counter() - t0, 1)}


def bench(suite: str, device: str = "auto", threads: int | None = None, command: str | None = None,
          log: Callable[[str], None] = print, **options) -> dict:
    """``vqforge bench --suite SUITE``: :func:`run_suite` on ``device`` (auto, cpu, cuda[:N]) with ``threads``
    torch threads (default: torch's choice); ``options`` are :func:`run_suite`'s. The result records
    ``command``, the command line that ran it (None: not from the command line)."""
    from ..devices import resolve_device

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    if suite == "gpu" and dev.type != "cuda":
        print("vqforge bench: note: the gpu suite on a CPU is slow at full size (use --quick to check it)")
    result = run_suite(suite, dev, log=log, **options)
    result["command"] = command
    return result
