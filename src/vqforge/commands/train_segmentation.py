"""`vqforge train segmentation`: train the segmentation condition stage (a VQGAN over one-hot label maps)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "segmentation", help="train a segmentation condition stage (VQGAN over one-hot label maps)",
        description="Train a VQGAN on label maps (8-bit PNGs, one label id per pixel) with BCE-with-logits on "
                    "the one-hot maps plus the codebook loss, like the original VQSegmentationModel. The run "
                    "directory loads as a VQGAN: pass it as --cond-stage to `vqforge encode` / `train transformer`.")
    p.add_argument("--config", help="run config YAML (n_labels, model, train), e.g. configs/seg_tiny.yaml")
    p.add_argument("--data", required=True, help="folder, file list or glob of label-map PNGs")
    p.add_argument("--out", metavar="RUN_DIR")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..io import VQForgeError
    from ..train.segmentation import SegmentationRunConfig, load_segmentation_config, train_segmentation

    if args.resume:
        metrics = train_segmentation(SegmentationRunConfig(), args.data, args.resume, max_steps=args.max_steps,
                                     progress=not args.no_progress, resume=True)
    else:
        if not args.config or not args.out:
            raise VQForgeError("a new run needs --config and --out (or --resume RUN_DIR)")
        cfg = load_segmentation_config(args.config, args.overrides)
        metrics = train_segmentation(cfg, args.data, args.out, max_steps=args.max_steps, progress=not args.no_progress)
    print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}))
    return 0
