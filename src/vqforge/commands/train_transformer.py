"""`vqforge train transformer`: train the second stage (GPT over first-stage tokens)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "transformer", help="train the transformer (stage 2) on a VQGAN's tokens",
        description="Train a GPT over the tokens of a frozen VQGAN, unconditional or conditioned on a class, "
                    "segmentation, depth, edges, a low-resolution image or coordinates. DATA is a token "
                    "dataset from `vqforge encode`, an image folder/list/glob (class labels from sub-folders), "
                    "or `fashion-mnist`. Resume an interrupted run with --resume RUN_DIR.")
    p.add_argument("--config", help="run config YAML (sections model and train), e.g. configs/transformer_tiny_class.yaml")
    p.add_argument("--data", help="token dataset dir, image folder/list/glob, or fashion-mnist[:DIR]")
    p.add_argument("--first-stage", metavar="VQGAN_DIR", help="the frozen first-stage VQGAN (model or run dir)")
    p.add_argument("--cond-stage", metavar="DIR", help="the frozen condition VQGAN of spatial conditions")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory to create")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--max-steps", type=int, help="stop after this many optimisation steps (overrides train.max_steps)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.batch_size=16")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..io import VQForgeError
    from ..train.transformer import TransformerRunConfig, load_run_config, train

    if args.resume:
        if args.data is None:
            raise VQForgeError("--resume needs --data (the same data as the original run)")
        metrics = train(TransformerRunConfig(), args.data, args.resume, resume=True, max_steps=args.max_steps,
                        progress=not args.no_progress)
    else:
        missing = [f"--{n.replace('_', '-')}" for n in ("config", "data", "first_stage", "out") if getattr(args, n) is None]
        if missing:
            raise VQForgeError(f"a new run needs {', '.join(missing)} (or --resume RUN_DIR)")
        cfg = load_run_config(args.config, args.overrides)
        metrics = train(cfg, args.data, args.out, first_stage=args.first_stage, cond_stage=args.cond_stage,
                        max_steps=args.max_steps, progress=not args.no_progress)
    print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}))
    return 0
