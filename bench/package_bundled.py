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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="runs/bundled")
    ap.add_argument("--out", default=str(REPO / "src" / "vqforge" / "bundled"))
    ap.add_argument("--cards", default=str(REPO / "bench" / "bundled_cards.yaml"))
    args = ap.parse_args()
    work = Path(args.work)
    cards = yaml.safe_load(Path(args.cards).read_text())
    for name, card in cards.items():
        stages = [stage_record(work / s) for s in card.pop("stages")]
        final = work / card.pop("model_run")
        model = vqforge.load(final)  # EMA weights where the run kept them
        card["steps"] = ", ".join(f"{s['run']} {s['steps']}" for s in stages)
        card["wall_time"] = (", ".join(f"{s['run']} {s['wall_time_min']} min" for s in stages)
                             + f"; total {sum(s['wall_time_min'] for s in stages):.0f} min")
        card.setdefault("machine", f"{platform.machine()} CPU, torch {torch.__version__}")
        out = vqforge.save_model(model, Path(args.out) / name, extra=card, dtype=torch.float16)
        size = (out / "model.safetensors").stat().st_size / 2**20
        print(f"{name}: {out} ({size:.1f} MiB); {card['steps']}; {card['wall_time']}")


if __name__ == "__main__":
    main()
