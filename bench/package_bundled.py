"""Package trained runs as the bundled models: float16 model directories with model cards, under
src/vqforge/bundled/<name>/ (see vqforge.bundled). Used by bench/retrain_bundled.sh; the cards' texts are in
bench/bundled_cards.yaml, and what is measured (steps, wall time per stage) is read from the runs themselves.

    PYTHONPATH=src python bench/package_bundled.py --work runs/bundled [--out src/vqforge/bundled]
"""

from __future__ import annotations

import argparse
import glob
import platform
import sys
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import vqforge  # noqa: E402
from vqforge.io import load_torch  # noqa: E402


def training_seconds(run: Path, max_gap: float = 600.0) -> float:
    """Wall time a run spent training: the TensorBoard events' wall times, summed over spans without a gap
    longer than ``max_gap`` seconds (restarts and pauses are not counted)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    times = sorted(e.wall_time for f in glob.glob(str(run / "tb" / "events.*")) for e in EventFileLoader(f).Load())
    return sum(b - a for a, b in zip(times, times[1:]) if b - a < max_gap)


def stage_record(run: Path) -> dict:
    ckpt = load_torch(run / "checkpoints" / "last.pt")
    return {"run": run.name, "kind": ckpt["kind"], "steps": int(ckpt["step"]),
            "wall_time_min": round(training_seconds(run) / 60, 1)}


#: the validation numbers shown per kind of run in docs/models.md (metric key, column title)
CURVE_COLUMNS = {
    "vqgan": [("val/psnr", "PSNR dB"), ("val_ema/psnr", "EMA PSNR dB"), ("val_ema/ssim", "EMA SSIM"),
              ("val_ema/codebook_usage", "EMA codebook usage")],
    "segmentation": [("val/pixel_accuracy", "pixel accuracy")],
    "transformer": [("val/loss", "val loss (nats/token)"), ("train/loss", "train loss (last logged)")],
}
CURVES_BEGIN, CURVES_END = "<!-- curves -->", "<!-- /curves -->"


def curve_table(run: Path) -> str:
    """The run's validation metrics at every evaluation (metrics.jsonl), as a markdown table."""
    import json

    text = (run / "metrics.jsonl").read_text()
    cols = next(c for c in CURVE_COLUMNS.values() if f'"{c[0][0]}"' in text)
    rows: dict[int, dict] = {}
    last_train: dict = {}
    for line in text.splitlines():
        m = json.loads(line)
        if "train/loss" in m:
            last_train = m
        if any(k.startswith("val") for k in m):
            row = rows.setdefault(m["step"], {})
            row.update(m)
            row.setdefault("train/loss", last_train.get("train/loss"))
    head = "| step | " + " | ".join(t for _, t in cols) + " |"
    lines = [head, "|" + " --- |" * (len(cols) + 1)]
    for step in sorted(rows):
        vals = [rows[step].get(k) for k, _ in cols]
        if all(v is None for v in vals):
            continue
        lines.append(f"| {step} | " + " | ".join("" if v is None else f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines)


def write_curves(doc: Path, work: Path, runs: list[str]) -> None:
    """Replace the section between the curve markers of ``doc`` with each run's validation table."""
    text = doc.read_text()
    if CURVES_BEGIN not in text or CURVES_END not in text:
        raise SystemExit(f"{doc}: no {CURVES_BEGIN} ... {CURVES_END} section to write the curves into")
    body = "\n\n".join(f"**{name}** (`{work.name}/{name}/metrics.jsonl`)\n\n{curve_table(work / name)}"
                        for name in runs)
    head, rest = text.split(CURVES_BEGIN, 1)
    doc.write_text(f"{head}{CURVES_BEGIN}\n{body}\n{CURVES_END}{rest.split(CURVES_END, 1)[1]}")


def swap_stages(name: str, run: Path, out: Path, cards: dict, transformer: Path | None = None) -> None:
    """Replace the first stage of the bundled model ``name`` (a transformer pipeline) by the VQGAN trained in ``run``
    (its EMA weights) and, given ``transformer`` (a transformer run's checkpoint, e.g. ``RUN/checkpoints/best.pt``),
    its GPT by that checkpoint's, keeping everything else (the condition stage); the card takes
    bench/bundled_cards.yaml's texts and gains the runs' steps and wall times. For stages retrained after the others
    were packaged, where their run directories are not at hand: the landscapes decoder (2026-12-07), then its whole
    first stage with the transformer fine-tuned on its tokens (issue 24)."""
    model = vqforge.load(name)
    model.first_stage.load_state_dict(vqforge.load(run).state_dict())
    card = dict(model.card) if getattr(model, "card", None) else yaml.safe_load(
        (out / name / "model.yaml").read_text())["extra"]
    for key in ("stages", "model_run", "model_checkpoint", "first_stage_run"):
        cards[name].pop(key, None)
    checkpoint = card.get("checkpoint")
    card.update(cards[name])
    records = [stage_record(run)]
    if transformer is not None:
        model.transformer.load_state_dict(vqforge.load(transformer).transformer.state_dict())
        gpt_run = transformer.parent.parent
        records.append(stage_record(gpt_run))
        step = int(load_torch(transformer)["step"])
        card["checkpoint"] = f"{checkpoint}, fine-tuned in {gpt_run.name}: {transformer.name} (step {step})"
    for rec in records:
        card["steps"] += f", {rec['run']} {rec['steps']}"
        card["wall_time"] = card["wall_time"].replace("; total", f", {rec['run']} {rec['wall_time_min']} min; total")
        total = float(card["wall_time"].rsplit("total ", 1)[1].split()[0]) + rec["wall_time_min"]
        card["wall_time"] = card["wall_time"].rsplit("total ", 1)[0] + f"total {total:.0f} min"
    path = vqforge.save_model(model, out / name, extra=card, dtype=torch.float16)
    size = (path / "model.safetensors").stat().st_size / 2**20
    print(f"{name}: {path} ({size:.1f} MiB); first stage from {run}"
          + (f", transformer from {transformer}" if transformer else "") + f"; {card['steps']}; {card['wall_time']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="runs/bundled")
    ap.add_argument("--out", default=str(REPO / "src" / "vqforge" / "bundled"))
    ap.add_argument("--cards", default=str(REPO / "bench" / "bundled_cards.yaml"))
    ap.add_argument("--doc", default=str(REPO / "docs" / "models.md"), help="where the validation curves go")
    ap.add_argument("--swap-first-stage", nargs=2, metavar=("NAME", "RUN"),
                    help="only replace the bundled NAME's first stage by RUN's (see swap_stages)")
    ap.add_argument("--transformer", metavar="CHECKPOINT",
                    help="with --swap-first-stage: also replace its GPT by this checkpoint's (a fine-tuned one)")
    args = ap.parse_args()
    work = Path(args.work)
    cards = yaml.safe_load(Path(args.cards).read_text())
    if args.swap_first_stage:
        name, run = args.swap_first_stage
        swap_stages(name, Path(run), Path(args.out), cards, Path(args.transformer) if args.transformer else None)
        return
    curves = []
    for name, card in cards.items():
        stages = [stage_record(work / s) for s in card.pop("stages")]
        curves += [s["run"] for s in stages]
        final = work / card.pop("model_run")
        checkpoint = card.pop("model_checkpoint", None)  # e.g. best.pt: the run's best validation checkpoint
        if checkpoint:
            final = final / "checkpoints" / checkpoint
            card["checkpoint"] = f"{checkpoint} (step {int(load_torch(final)['step'])})"
        model = vqforge.load(final)  # EMA weights where the run kept them
        first = card.pop("first_stage_run", None)  # a later run of the first stage (landscapes: its decoder again)
        if first:
            model.first_stage.load_state_dict(vqforge.load(work / first).state_dict())
        card["steps"] = ", ".join(f"{s['run']} {s['steps']}" for s in stages)
        card["wall_time"] = (", ".join(f"{s['run']} {s['wall_time_min']} min" for s in stages)
                             + f"; total {sum(s['wall_time_min'] for s in stages):.0f} min")
        card.setdefault("machine", f"{platform.machine()} CPU, torch {torch.__version__}")
        out = vqforge.save_model(model, Path(args.out) / name, extra=card, dtype=torch.float16)
        size = (out / "model.safetensors").stat().st_size / 2**20
        print(f"{name}: {out} ({size:.1f} MiB); {card['steps']}; {card['wall_time']}")
    write_curves(Path(args.doc), work, curves)


if __name__ == "__main__":
    main()
