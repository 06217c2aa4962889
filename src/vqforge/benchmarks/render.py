"""Markdown tables from a ``vqforge bench`` JSON result, and their placement in docs/benchmarks.md.

The tables in docs/benchmarks.md are never typed by hand: ``vqforge bench --render RESULT.json --into
docs/benchmarks.md`` replaces the text between ``<!-- bench:SUITE -->`` and ``<!-- /bench:SUITE -->``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..io import VQForgeError, write_text
from .rows import EXACT, FAST, ORIGINAL


def _cell(c: dict | None, unit: str) -> str:
    if c is None:
        return "—"
    per_run = f"{c['median_s']:.3f} s" if c["median_s"] < 100 else f"{c['median_s']:.0f} s"
    if c.get("throughput") is None:
        return per_run
    t = c["throughput"]
    return f"{t:,.0f} {unit}" if t >= 100 else f"{t:.1f} {unit} ({per_run})" if t < 10 else f"{t:.0f} {unit} ({per_run})"


def _ratio(c: dict | None) -> str:
    return "—" if c is None or "speedup" not in c else f"{c['speedup']:.2f}×"


def _mib(c: dict | None) -> str:
    return "—" if c is None or c.get("peak_mib") is None else f"{c['peak_mib']:,.0f}"


def _load_note(env: dict) -> str:
    """What the 1-minute load averages at start and end say of a CPU run: a quiet machine or a shared one."""
    if env["device"].startswith("cuda"):
        return ""
    loads = [la[0] for la in (env.get("load_average"), env.get("load_average_end")) if la]
    if loads and max(loads) <= env["cpu_count"]:
        return " (no more than the CPU count: a quiet machine)"
    return (" (above the CPU count the machine was shared: absolute numbers are slow, the interleaved ratios hold"
            " better)")


def _run_lines(result: dict, command: str | None) -> list[str]:
    env = result["environment"]
    where = env.get("gpu") or f"{env['cpu']} ({env['cpu_count']} CPUs; {', '.join(env['cpu_features']) or 'no bf16'})"
    orig = result.get("original") or f"not measured ({result.get('original_missing')})"
    lines = [
        f"- Device: {env['device']}, {where}; torch {env['torch']}, {env['threads']} threads. Date: {env['date']}.",
        f"- Load average (1/5/15 min) at start {env['load_average']}, at end {env.get('load_average_end')}"
        + _load_note(env) + ".",
        f"- Original: {orig}; same weights (random), same inputs, one process, interleaved runs"
        f" ({result['repeat']} timed rounds at most, after warm-up; medians). Wall time {result['wall_s']:.0f} s.",
    ]
    if command:
        lines.insert(0, f"- Command: `{command}`")
    if result.get("quick"):
        lines.append("- `--quick`: toy model sizes (a smoke test, not a measurement).")
    return lines


def _header(result: dict, command: str | None) -> list[str]:
    parts = result.get("parts")
    if not parts:
        return _run_lines(result, command)
    lines = []
    for i, part in enumerate(parts, 1):
        lines.append(f"- Run {i} of {len(parts)} (rows {', '.join(part['row_ids'])}):")
        lines += ["  " + ln for ln in _run_lines(part, part.get("command"))]
    return lines


def combine(results: list[dict]) -> dict:
    """One result from the results of several runs of the same suite (e.g. rows measured at different times):
    their rows in order, and each run's own description (``parts``)."""
    if len(results) == 1:
        return results[0]
    suites = {r["suite"] for r in results}
    if len(suites) != 1:
        raise VQForgeError(f"bench --render: results of different suites ({', '.join(sorted(suites))}) cannot be "
                           f"combined")
    parts = [{**{k: v for k, v in r.items() if k != "rows"}, "row_ids": [row["id"] for row in r["rows"]]}
             for r in results]
    return {**results[0], "rows": [row for r in results for row in r["rows"]], "parts": parts,
            "skipped": [s for r in results for s in r.get("skipped", [])]}


def render_levers(result: dict, command: str | None = None) -> str:
    """The levers suite: per row, vqforge's fast path and each variant with one lever changed (time, and the
    variant's time over the fast path's: above 1 means that lever pays)."""
    lines = _header(result, command)
    for row in result["rows"]:
        if "error" in row:
            lines += ["", f"{row['id']}: failed: {row['error'].splitlines()[0][:200]}"]
            continue
        cs = row["contestants"]
        fast = cs[FAST]
        same = "" if row.get("agreement") is None else \
            f" (same weights: the original's and vqforge fp32's outputs differ by at most {row['agreement']:.1e})"
        lines += ["", f"**{row['work']}**{same}", "",
                  "| variant | median | CPU time | ÷ fast (wall) | ÷ fast (CPU time) | what ran |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]
        for name, c in cs.items():
            cpu = c.get("cpu_median_s")
            cpu_cell = f"{cpu:.3f} s" if cpu else "—"
            cpu_ratio = f"{cpu / fast['cpu_median_s']:.2f}" if cpu and fast.get("cpu_median_s") else "—"
            note = c["note"]
            first = c.get("first_run_s")
            if first is not None and "compile" in note and first - c["median_s"] > 5.0:
                note += f" (first call {first:.0f} s: compiling)"
            lines.append(f"| {name} | {c['median_s']:.3f} s | {cpu_cell} | {c['median_s'] / fast['median_s']:.2f} | "
                         f"{cpu_ratio} | {note} |")
    return "\n".join(lines) + "\n"


def render(result: dict, command: str | None = None) -> str:
    """The markdown for one suite's result: header, speed table, memory table, what each path was."""
    if result["suite"] == "levers":
        return render_levers(result, command)
    lines = _header(result, command)
    lines += ["", "| work | original | vqforge fp32 | ratio | vqforge fast | ratio | target |",
              "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    mem = ["", "Peak memory (MiB; held tensors + the run's peak rise, see `vqforge.benchmarks.measure`):", "",
           "| work | original | vqforge fp32 | vqforge fast | fast ÷ original |", "| --- | ---: | ---: | ---: | ---: |"]
    notes: dict[str, set[str]] = {}
    compile_lines, agree = [], []
    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['id']} | failed: {row['error'].splitlines()[0][:120]} | | | | | |")
            continue
        cs = row["contestants"]
        o, e, f = cs.get(ORIGINAL), cs.get(EXACT), cs.get(FAST)
        lines.append(f"| {row['work']} | {_cell(o, row['unit'])} | {_cell(e, row['unit'])} | {_ratio(e)} | "
                     f"{_cell(f, row['unit'])} | {_ratio(f)} | {row['target'] or '—'} |")
        if row.get("agreement") is not None:
            agree.append(f"{row['id']} {row['agreement']:.1e}")
        mr = "—" if f is None or "memory_ratio" not in f else f"{f['memory_ratio']:.2f}×"
        mem.append(f"| {row['work']} | {_mib(o)} | {_mib(e)} | {_mib(f)} | {mr} |")
        for name, c in cs.items():
            if c.get("note"):
                notes.setdefault(name, set()).add(f"{row['id']}: {c['note']}")
            first = c.get("first_run_s")
            if first is not None and first - c["median_s"] > 1.0:
                compile_lines.append(f"{row['id']} / {name}: first run {first:.1f} s (median {c['median_s']:.2f} s)")
    lines += mem
    lines += ["", "What ran" + (" (same weights: the original's and vqforge fp32's outputs differ by at most "
                                + ", ".join(agree) + ")" if agree else "") + ":"]
    for name in (ORIGINAL, EXACT, FAST):
        if name in notes:
            lines.append(f"- {name}: " + "; ".join(sorted(notes[name])))
    if compile_lines:
        lines += ["", "Compile / first-call time (not in the timed runs): " + "; ".join(compile_lines) + "."]
    if result.get("skipped"):
        lines += ["", f"Skipped for time: {', '.join(result['skipped'])}."]
    lines += _extras(result)
    return "\n".join(lines) + "\n"


def _extras(result: dict) -> list[str]:
    """The GPU run's measured ceilings and correctness checks, when present."""
    lines = []
    profiled = [r for r in result["rows"] if r.get("profile")]
    if profiled:
        lines += ["", "Where the time goes (one profiled run each; operators by share of self time):", ""]
        for r in profiled:
            for name, ops in r["profile"].items():
                lines.append(f"- {r['id']} / {name}: " + ", ".join(f"`{o['op']}` {o['share']:.0%}" for o in ops))
    ceil = result.get("ceilings")
    if ceil:
        lines += ["", "Ceilings measured on the card in the same run: " +
                  ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in ceil.items()) + "."]
    checks = result.get("checks")
    if checks:
        lines += ["", "Correctness checks (same run):", ""]
        for c in checks:
            detail = {k: v for k, v in c.items() if k not in ("check", "ok", "fp32_losses", "bf16_losses")}
            lines.append(f"- {c['check']}: **{'ok' if c['ok'] else 'FAILED'}** — "
                         + ", ".join(f"{k} {v}" for k, v in detail.items()))
    return lines


def markers(suite: str) -> tuple[str, str]:
    return f"<!-- bench:{suite} -->", f"<!-- /bench:{suite} -->"


def render_into(doc: str | Path, result: dict, command: str | None = None) -> None:
    """Replace the suite's marked section of ``doc`` with :func:`render`'s tables (written atomically)."""
    doc = Path(doc)
    begin, end = markers(result["suite"])
    text = doc.read_text() if doc.is_file() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise VQForgeError(f"{doc}: no '{begin}' ... '{end}' section to fill (add the two marker lines where "
                           f"the {result['suite']} tables belong)")
    body = f"{begin}\n{render(result, command)}{end}"
    write_text(doc, pattern.sub(lambda _: body, text, count=1))


def render_files(paths: list[str | Path], into: str | Path | None = None, command: str | None = None) -> str:
    """``vqforge bench --render``: combine the results in ``paths`` (several runs of one suite) and return their
    markdown, or, with ``into``, put it into that document's marked section and return the line saying so.
    ``command``: the command line to quote (default: a single result's own)."""
    import json

    results = []
    for name in paths:
        path = Path(name)
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise VQForgeError(f"{path}: not a readable bench result ({e})") from None
        if not isinstance(result, dict) or "rows" not in result or "suite" not in result:
            raise VQForgeError(f"{path}: not a vqforge bench result (no suite / rows)")
        results.append(result)
    result = combine(results)
    command = command or (result.get("command") if len(results) == 1 else None)
    if not into:
        return render(result, command)
    render_into(into, result, command)
    return f"{into}: {result['suite']} section updated from {', '.join(map(str, paths))}\n"
