"""`vqforge convert`: an original Taming Transformers config + checkpoint -> a vqforge model directory
(:func:`vqforge.compat.load.convert_taming`)."""

from __future__ import annotations

import argparse

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
    from ..compat.load import convert_taming

    out, model = convert_taming(args.config, args.checkpoint, args.out, save_model, overwrite=args.overwrite,
                                trust=args.trust_checkpoint)
    n = sum(p.numel() for p in model.state_dict().values())
    print(f"wrote {out} ({type(model).__name__}, {n / 1e6:.1f}M values)")
    return 0
