"""Render the paper experiments' results (bench/results/paper/exp*.json) into docs/paper.md, with matplotlib plots
(PNG) in docs/paper/. Nothing in the page is typed by hand: the paper's statement and number, our setting, our
numbers (mean, seed range, sample count) and the verdict all come from the JSON the experiment wrote.

    PYTHONPATH=src python bench/paper/render.py [--results bench/results/paper] [--out docs/paper.md]

Needs matplotlib for the plots (``pip install -e '.[bench]'``); without it the page is written without them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from vqforge.io import write_text  # noqa: E402

EXPERIMENTS = [
    ("exp1_attention", "1. Attention is all you need in the latent space (Section 4.1)"),
    ("exp2_vocab", "2. Context-rich vocabularies (Section 4.3)"),
    ("exp3_first_stage", "3. How good is the VQGAN (Section 4.4.2)"),
    ("exp4_sampling", "4. Sampling choices"),
    ("exp5_original", "5. vqforge against the original, trained the same way"),
]

#: column -> (header, format, scale)
COLUMNS = {
    "params": ("parameters", "{:.2f} M", 1e-6), "seq_len": ("tokens", "{:.0f}", 1),
    "gpt_steps": ("transformer steps", "{:.0f}", 1),
    "test_nll": ("held-out NLL (nats/token)", "{:.4f}", 1), "nll_at_equal_time": ("NLL at equal time", "{:.4f}", 1),
    "fid": ("sample FID", "{:.2f}", 1), "rfid": ("rFID", "{:.2f}", 1), "psnr": ("PSNR (dB)", "{:.2f}", 1),
    "usage": ("codebook usage", "{:.1%}", 1), "perplexity": ("code perplexity", "{:.0f}", 1),
    "class_match": ("class-match", "{:.1%}", 1), "train_seconds": ("training (s)", "{:.0f}", 1),
    "vqgan_seconds": ("VQGAN training (s)", "{:.0f}", 1), "gpt_seconds": ("transformer training (s)", "{:.0f}", 1),
    "sample_seconds_per_image": ("sampling (s/image)", "{:.3f}", 1),
    "seconds_per_sample": ("sampling (s/image)", "{:.3f}", 1),
}

HEADER = """# The paper's claims, reproduced at a scale this machine can run

Rendered by `bench/paper/render.py` from `bench/results/paper/*.json`; nothing here is typed by hand. Each section
gives the paper's statement and number, our setting, our numbers (mean over seeds, the seed range in brackets, the
number of seeds `n`; FID with its sample count) and a verdict computed by the experiment script from those numbers:
*reproduced* (the paper's preferred arm wins by more than a margin plus the seed ranges), *not reproduced* (within
them) or *reversed at this scale*.

How to run: `bench/paper/run_all.sh` starts every experiment in the background, one after another (logs in
`runs/paper/`; each is resumable: run it again after an interruption and finished stages are skipped, cut-short
ones continue from their checkpoints), then renders this page. Experiment 5 runs in the benchmark environment of
`make bench-venv` (the original is never a dependency of vqforge). Each script's `--help` states its budget;
`--measure N` times N steps of every arm on the machine at hand and writes the estimate below
(`bench/paper/run_all.sh --measure` does it for all). A smaller budget for experiment n: `EXPn_ARGS="--seeds 0
--vqgan-steps 1500" bench/paper/run_all.sh` (the page states the budget each result was run with).
"""


def fmt(cell, column: str) -> str:
    """'mean (min-max, n=k)' of a spread, or the plain value."""
    name, f, scale = COLUMNS.get(column, (column, "{:.4g}", 1))
    if isinstance(cell, dict) and "mean" in cell:
        if cell["mean"] is None:
            return "-"
        text = f.format(cell["mean"] * scale)
        if cell["n"] > 1:
            text += f" ({f.format(cell['min'] * scale)}-{f.format(cell['max'] * scale)}, n={cell['n']})"
        return text
    if cell is None:
        return "-"
    return f.format(cell * scale) if isinstance(cell, (int, float)) else str(cell)


def table(result: dict) -> list[str]:
    cols = result["columns"]
    lines = ["| arm | " + " | ".join(COLUMNS.get(c, (c,))[0] for c in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for row in result["rows"]:
        lines.append(f"| {row['arm']} | " + " | ".join(fmt(row.get(c), c) for c in cols) + " |")
    return lines


def budget_lines(results: Path) -> list[str]:
    """The measured per-step costs (``*_budget.json`` from ``--measure``), as a table."""
    rows = []
    for p in sorted(results.glob("*_budget.json")):
        b = json.loads(p.read_text())
        for arm in b["arms"]:
            rows.append(f"| {b['experiment']} | {arm['arm']} | {arm['cost']} | {arm['hours']:.1f} h |")
    if not rows:
        return []
    budgets = [json.loads(p.read_text()) for p in sorted(results.glob("*_budget.json"))]
    m = budgets[0].get("machine", {})
    total = sum(a["hours"] for b in budgets for a in b["arms"])
    return ["", f"The default budgets, measured with `--measure 3` on {m.get('cpu', '?')} ({m.get('threads', '?')} "
                f"thread, {m.get('date', '?')}): CPU seconds per training step, which is the wall time per step of a "
                f"machine running nothing else (this one was shared, which CPU time does not count), and the hours "
                f"of the whole budget (every arm, every seed; evaluation not included). Two threads "
                f"(`THREADS=2`, run_all.sh's default) take about 0.6-0.75x as long.", "",
            "| experiment | arm | measured (1 thread) | budget |", "|---|---|---|---|", *rows,
            f"| all | | | {total:.0f} h |"]


# ============================================================================================ plots
def plot(result: dict, spec: dict, out_dir: Path) -> str | None:
    """Draw one plot of ``result`` as ``spec`` says; returns its file name, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = result["rows"]
    kind = spec["kind"]
    if kind == "curves":
        xs = spec["x"]
        fig, axes = plt.subplots(1, len(xs), figsize=(5 * len(xs), 3.6), squeeze=False)
        for ax, x in zip(axes[0], xs):
            for i, row in enumerate(rows):
                for s, curve in enumerate(row.get("curves") or []):
                    pts = [c for c in (curve or []) if x in c and c.get(spec["y"]) is not None]
                    if pts:
                        ax.plot([c[x] for c in pts], [c[spec["y"]] for c in pts], color=f"C{i}",
                                alpha=1.0 if s == 0 else 0.5, label=row["arm"] if s == 0 else None)
            ax.set_xlabel("training steps" if x == "step" else "training wall time (s)")
            ax.set_ylabel(spec["title"])
            ax.legend()
    elif kind == "bars":
        ys = spec["y"]
        fig, axes = plt.subplots(1, len(ys), figsize=(5 * len(ys), 3.6), squeeze=False)
        for ax, y in zip(axes[0], ys):
            names = [str(r["arm"]) for r in rows]
            means = [r[y]["mean"] if r[y]["mean"] is not None else 0 for r in rows]
            lo = [m - (r[y]["min"] if r[y]["min"] is not None else m) for m, r in zip(means, rows)]
            hi = [(r[y]["max"] if r[y]["max"] is not None else m) - m for m, r in zip(means, rows)]
            ax.bar(range(len(rows)), means, yerr=[lo, hi], color=[f"C{i}" for i in range(len(rows))], capsize=3)
            ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=7)
            ax.set_ylabel(COLUMNS.get(y, (y,))[0])
    elif kind == "tradeoff":
        fig, ax = plt.subplots(figsize=(6, 4.2))
        families = list(dict.fromkeys(r["family"] for r in rows))
        for i, fam in enumerate(families):
            pts = [r for r in rows if r["family"] == fam and r[spec["x"]]["mean"] is not None
                   and r[spec["y"]]["mean"] is not None]
            ax.plot([r[spec["x"]]["mean"] for r in pts], [r[spec["y"]]["mean"] for r in pts], "o-", color=f"C{i}",
                    label=fam)
            for r in pts:
                ax.annotate(f"{r['value']:g}", (r[spec["x"]]["mean"], r[spec["y"]]["mean"]), fontsize=7)
        ax.set_xlabel(COLUMNS.get(spec["x"], (spec["x"],))[0])
        ax.set_ylabel(COLUMNS.get(spec["y"], (spec["y"],))[0])
        ax.legend()
    else:
        return None
    fig.suptitle(spec["title"], fontsize=10)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / spec["file"], dpi=110)
    plt.close(fig)
    return spec["file"]


# ============================================================================================ the page
def section(name: str, title: str, results: Path, plots: Path, doc: Path) -> list[str]:
    path = results / f"{name}.json"
    lines = [f"## {title}", ""]
    if not path.is_file():
        return lines + [f"Not run yet: `bench/paper/run_all.sh`, or alone "
                        f"`PYTHONPATH=src python bench/paper/{name}.py` (its `--help` states the budget).", ""]
    r = json.loads(path.read_text())
    if r.get("toy"):
        lines += ["**A toy run (tiny models, a few steps): it shows the pipeline works, not a result.**", ""]
    p = r["paper"]
    m = r.get("machine", {})
    lines += [f"**The paper** ({p['section']}): {p['statement']}", "", f"**The paper's number**: {p['number']}", "",
              f"**Our setting**: {r['setting']}. Seeds {', '.join(map(str, r['budget'].get('seeds', [])))}; "
              f"measured on {m.get('cpu', '?')} ({m.get('threads', '?')} thread(s)), {m.get('date', '?')}.", "",
              *table(r), "", "**Verdict**: " + "; ".join(f"{k}: *{v}*" for k, v in r["verdict"].items()), ""]
    for spec in r.get("plots", []):
        f = plot(r, spec, plots)
        if f:
            lines += [f"![{spec['title']}]({(plots / f).relative_to(doc.parent).as_posix()})", ""]
    return lines


def render(results: Path, out: Path) -> str:
    plots = out.parent / out.stem
    lines = [HEADER.rstrip(), *budget_lines(results), ""]
    for name, title in EXPERIMENTS:
        lines += section(name, title, results, plots, out)
    text = "\n".join(lines).rstrip() + "\n"
    write_text(out, text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(REPO / "bench" / "results" / "paper"))
    ap.add_argument("--out", default=str(REPO / "docs" / "paper.md"))
    args = ap.parse_args()
    render(Path(args.results), Path(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
