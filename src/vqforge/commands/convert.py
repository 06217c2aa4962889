"""`vqforge convert`: an original Taming Transformers config + checkpoint -> a vqforge model directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_trust_option


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert an original Taming Transformers YAML + .ckpt into a vqforge model directory",
                       description="Read the original's project YAML and Lightning checkpoint and write a self-describing "
                                   "vqforge model directory (model.yaml + model.safetensors).")
    p.add_argument("--config", required=True, help="the original's project YAML (e.g. configs/*-project.yaml of a run)")
    p.add_argument("--checkpoint", required=True, help="the original's Lightning checkpoint (.ckpt)")
    p.add_argument("--out", required=True, help="output model directory (written whole or not at all)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even when it holds something other than this conversion (its files are lost)")
    add_trust_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api import save_model
    from ..compat.load import load_taming
    from ..io import VQForgeError, check_output_dir
    from ..modeldir import is_model_dir

    source = {"config": str(args.config), "checkpoint": str(args.checkpoint)}

    def replaceable(path: Path) -> bool:  # this very conversion, written before (re-running it); else --overwrite
        return args.overwrite or _converted_from(path) == source

    out_dir = Path(args.out)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not replaceable(out_dir):  # refused before any work
        held = "another model" if is_model_dir(out_dir) else "files vqforge did not write"
        raise VQForgeError(f"{out_dir}: exists and holds {held}; choose another --out, or pass --overwrite to "
                           f"replace it (what it holds is lost)")
    check_output_dir(out_dir, "model directory", replaceable)
    model = load_taming(args.config, args.checkpoint, trust=args.trust_checkpoint)
    out = save_model(model, args.out, extra={"converted_from": source}, replaceable=replaceable)
    n = sum(p.numel() for p in model.state_dict().values())
    print(f"wrote {out} ({type(model).__name__}, {n / 1e6:.1f}M values)")
    return 0


def _converted_from(path: Path) -> dict | None:
    """The ``converted_from`` record of the model directory ``path`` (None if it is not one `convert` wrote)."""
    from ..io import VQForgeError
    from ..modeldir import is_model_dir, read_model_meta

    if not is_model_dir(path):
        return None
    try:
        record = read_model_meta(path).card.get("converted_from")
    except VQForgeError:  # a damaged model.yaml: not this conversion
        return None
    return record if isinstance(record, dict) else None
