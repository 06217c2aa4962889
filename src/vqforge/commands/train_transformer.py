"""`vqforge train transformer`: train the second stage (GPT over first-stage tokens)."""

from __future__ import annotations

import argparse

from . import train_common


def add_parser(sub) -> None:
    p = sub.add_parser(
        "transformer", help="train the transformer (stage 2) on a VQGAN's tokens",
        description="Train a GPT over the tokens of a frozen VQGAN, unconditional or conditioned on a class, "
                    "segmentation, depth, edges, a low-resolution image or coordinates. DATA is a token "
                    "dataset from `vqforge encode`, an image folder/list/glob (class labels from sub-folders), "
                    "or `fashion-mnist`; --val-data a second, held-out token dataset. Validation loss is "
                    "printed as training goes; checkpoints/best.pt keeps the best. Resume with --resume RUN_DIR.")
    train_common.add_arguments(p, "token dataset dir, image folder/list/glob, or fashion-mnist "
                                  "(with --resume: defaults to the run's data)",
                               "run config YAML (sections model and train), e.g. configs/transformer_tiny_class.yaml")
    p.add_argument("--first-stage", metavar="VQGAN_DIR", help="the frozen first-stage VQGAN (model or run dir)")
    p.add_argument("--cond-stage", metavar="DIR", help="the frozen condition VQGAN of spatial conditions")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import VQForgeError
    from ..train.transformer import load_config, train_transformer

    if not args.resume and not args.first_stage:
        raise VQForgeError("train transformer: a new run needs --first-stage VQGAN_DIR (or --resume RUN_DIR)")

    def train_fn(cfg, out, **kw):
        return train_transformer(cfg, None, out, first_stage=args.first_stage, cond_stage=args.cond_stage, **kw)

    return train_common.run_trainer(args, "transformer", load_config, train_fn)
