"""`vqforge train condition`: train a condition stage (a VQGAN over segmentation, depth or edge maps).

`vqforge train segmentation`, its former name, keeps working with a notice.
"""

from __future__ import annotations

import argparse

from . import train_common


#: command name -> the notice it prints (the former name of the command)
NAMES = {"condition": "", "segmentation": "`vqforge train segmentation` is now `vqforge train condition`"}


def add_parser(sub) -> None:
    from ..models.conditioning import stage_modes

    for name, renamed in NAMES.items():
        p = sub.add_parser(
            name, help=argparse.SUPPRESS if renamed else
            "train a condition stage (VQGAN over segmentation, depth or edge maps)",
            description="Train the VQGAN that encodes the transformer's spatial condition: segmentation maps "
                        "(8-bit label-id PNGs; one-hot input, BCE), depth maps (D-RIN float32-in-RGBA PNGs or "
                        "one-channel images; L1) or edges (Canny edges of photos; BCE), chosen by the config's "
                        "`mode` or --mode. The run directory loads as a VQGAN: pass it as --cond-stage to "
                        "`vqforge encode` / `vqforge train transformer`.")
        train_common.add_arguments(p, "label maps, depth maps or photos (edges): a folder, .txt file list or glob",
                                   "run config YAML (mode, n_labels, model, train), e.g. configs/seg_tiny.yaml")
        p.add_argument("--mode", choices=stage_modes(),
                       help="the conditioning mode whose condition stage to train (default: the config's mode)")
        p.set_defaults(func=run, renamed=renamed)


def run(args: argparse.Namespace) -> int:
    from ..train.condition import load_config, train_condition
    from ..train.settings import notice

    if args.renamed:
        notice(args.renamed)
    overrides = list(args.overrides) + ([f"mode={args.mode}"] if args.mode else [])
    args.overrides = overrides
    return train_common.run_trainer(args, "condition", load_config, train_condition)
