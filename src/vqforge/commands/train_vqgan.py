"""`vqforge train vqgan`: train a VQGAN first stage on a folder of images, or resume a run.

    vqforge train vqgan --config configs/vqgan_gpu.yaml --data PHOTOS [--val-data VAL] --out RUN_DIR \\
        [--max-steps N] [key=value ...]
    vqforge train vqgan --resume RUN_DIR [--max-steps N]
    torchrun --nproc_per_node 8 -m vqforge train vqgan ...      # DDP, one process per GPU
"""

from __future__ import annotations

import argparse

from . import train_common
from .options import add_max_memory, budget_from_args


def add_parser(sub) -> None:
    p = sub.add_parser(
        "vqgan", help="train a VQGAN (first stage) on images, or resume a run",
        description="Train a VQGAN on a folder / file list / glob of images (or continue a run with --resume). "
                    "Run under torchrun for several GPUs or machines. SIGINT/SIGTERM save a checkpoint first.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  vqforge train vqgan --config configs/vqgan_tiny.yaml --data assets/photos --out runs/tiny\n"
               "  vqforge train vqgan --config configs/vqgan_gpu.yaml --data photos/ --out runs/mine "
               "train.batch_size=8 train.max_steps=200000\n"
               "  vqforge train vqgan --resume runs/mine --max-steps 300000")
    train_common.add_arguments(p, "training images: a folder (recursive), a .txt file list, a glob, or fashion-mnist",
                               "training config YAML (see configs/vqgan_*.yaml)")
    add_max_memory(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.vqgan import load_config, train_vqgan

    budget = budget_from_args(args) if args.max_memory else None  # None: the default, taken on the run's device
    return train_common.run_trainer(args, "vqgan", load_config, train_vqgan, budget=budget)
