"""What every `vqforge train STAGE` command shares: one set of flags and one way to start or resume a run.

    --config --data --val-data --out --resume --max-steps --time-limit --device --precision --seed
    --quiet --json  [key=value ...]

Old spellings keep working with a notice (``--no-progress`` -> ``--quiet``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable

NAMED_DATASETS = ("fashion-mnist",)


def add_arguments(p: argparse.ArgumentParser, data_help: str, config_help: str) -> None:
    """The flags of every trainer (see the module doc)."""
    p.add_argument("--config", help=f"{config_help}; or the name of a config shipped with vqforge (e.g. "
                                     "vqgan_cpu, bundled/fashion_vqgan; an unknown name lists them)")
    p.add_argument("--data", help=f"{data_help}; or webdataset tar shards: 'DIR/shard-{{000000..000099}}.tar' or the "
                                  f"folder `vqforge shard` wrote (docs/scaling.md)")
    p.add_argument("--val-data", help="held-out validation data (default: hold out train.val_fraction of --data)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory to create (config.yaml, checkpoints/, tb/, images/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from checkpoints/last.pt")
    p.add_argument("--max-steps", type=int, help="train until this many optimisation steps in total")
    p.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="stop after this many minutes of training (a checkpoint is saved; resume later)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: the config's train.device)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"],
                   help="auto: bf16 where the device runs it natively; fp32: the exact path (default: the "
                        "config's train.precision)")
    p.add_argument("--seed", type=int, help="random seed (default: the config's train.seed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-validation lines")
    p.add_argument("--json", action="store_true", help="print the final summary as one JSON object")
    p.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)  # old spelling of --quiet
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted config overrides, e.g. train.batch_size=8 model.gpt.n_layer=12")


def run_trainer(args: argparse.Namespace, stage: str, load_config: Callable[[str], Any],
                train: Callable[..., Any], **extra: Any) -> int:
    """Start (``--config --data --out``) or continue (``--resume RUN_DIR``) a run of ``train``."""
    from ..config.presets import resolve_config
    from ..io import VQForgeError
    from ..train.settings import notice

    quiet = args.quiet
    if args.no_progress:
        notice("--no-progress is now --quiet")
        quiet = True
    settings: dict[str, Any] = {}
    if args.data:
        settings["data"] = args.data if args.data.split(":", 1)[0] in NAMED_DATASETS else os.path.abspath(args.data)
    if args.val_data:
        settings["val_data"] = os.path.abspath(args.val_data)
    for name in ("device", "precision", "seed"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    if args.resume:
        if args.config or args.out:
            raise VQForgeError("--resume RUN_DIR takes the config from the run; do not combine it with "
                               "--config or --out (change settings with key=value overrides)")
        cfg, out, resume = None, Path(args.resume), True
    else:
        missing = [flag for flag, v in (("--config", args.config), ("--data", args.data), ("--out", args.out))
                   if not v]
        if missing:
            raise VQForgeError(f"train {stage}: missing {', '.join(missing)} (or continue a run with --resume RUN_DIR)")
        cfg, out, resume = load_config(str(resolve_config(args.config))), Path(args.out), False
    time_limit = args.time_limit * 60 if args.time_limit else None
    train(cfg, out, resume=resume, overrides=list(args.overrides), settings=settings, max_steps=args.max_steps,
          time_limit=time_limit, quiet=quiet, json=args.json, **extra)
    return 0  # a run stopped by SIGINT/SIGTERM or its time limit saved its checkpoint: a clean exit
