"""`vqforge train vqgan`: train a VQGAN first stage on a folder of images, or resume a run.

    vqforge train vqgan --config configs/vqgan_custom.yaml --data PHOTOS [--val-data VAL] --out RUN_DIR \\
        [--max-steps N] [key=value ...]
    vqforge train vqgan --resume RUN_DIR [--max-steps N]
    torchrun --nproc_per_node 8 -m vqforge train vqgan ...      # DDP, one process per GPU
"""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "vqgan", help="train a VQGAN (first stage) on images, or resume a run",
        description="Train a VQGAN on a folder / file list / glob of images (or continue a run with --resume). "
                    "Run under torchrun for several GPUs or machines. SIGINT/SIGTERM save a checkpoint first.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  vqforge train vqgan --config configs/vqgan_tiny.yaml --data assets/photos --out runs/tiny\n"
               "  vqforge train vqgan --config configs/vqgan_custom.yaml --data photos/ --out runs/mine "
               "data.batch_size=8 schedule.max_steps=200000\n"
               "  vqforge train vqgan --resume runs/mine --max-steps 300000")
    p.add_argument("--config", help="training config YAML (see configs/vqgan_*.yaml)")
    p.add_argument("--data", help="training images: a folder (recursive), a .txt file list or a glob")
    p.add_argument("--val-data", help="validation images (default: hold out data.val_fraction of --data)")
    p.add_argument("--out", help="run directory to create (config.yaml, checkpoints/, tb/, images/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from checkpoints/last.pt")
    p.add_argument("--max-steps", type=int, help="train until this many optimisation steps in total")
    p.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="stop after this many minutes of training (a checkpoint is saved; resume later)")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: the config's device, 'auto')")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted config overrides, e.g. data.batch_size=8 loss.disc_start=50001")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import os
    from pathlib import Path

    from ..config import apply_overrides, load_yaml
    from ..io import VQForgeError
    from ..train.vqgan import VQGANTrainConfig, load_run_config, train_vqgan

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    if args.resume:
        if args.config or args.data or args.out or args.val_data:
            raise VQForgeError("--resume RUN_DIR takes the config and data from the run; "
                               "do not combine it with --config/--data/--val-data/--out")
        run_dir = Path(args.resume)
        cfg = load_run_config(run_dir)
        if overrides:
            cfg = apply_overrides(cfg, overrides)
        result = train_vqgan(cfg, run_dir, resume=True, max_steps=args.max_steps, show_progress=not args.no_progress,
                             max_seconds=args.time_limit * 60 if args.time_limit else None)
    else:
        missing = [flag for flag, v in (("--config", args.config), ("--data", args.data), ("--out", args.out)) if not v]
        if missing:
            raise VQForgeError(f"train vqgan: missing {', '.join(missing)} (or use --resume RUN_DIR)")
        run_dir = Path(args.out)
        if (run_dir / "checkpoints" / "last.pt").is_file():
            raise VQForgeError(f"{run_dir}: already holds a training run; continue it with "
                               f"`vqforge train vqgan --resume {run_dir}` or choose another --out")
        cfg = apply_overrides(load_yaml(VQGANTrainConfig, args.config), overrides)
        # Paths are set directly (not as overrides) so that YAML never reinterprets them.
        # Absolute, so that `--resume` works from any directory.
        val = args.val_data or cfg.data.val
        named = args.data.split(":", 1)[0] in ("fashion-mnist",)  # a named dataset, not a path
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, train=args.data if named else os.path.abspath(args.data),
            val=os.path.abspath(val) if val else ""))
        result = train_vqgan(cfg, run_dir, resume=False, max_steps=args.max_steps, show_progress=not args.no_progress,
                             max_seconds=args.time_limit * 60 if args.time_limit else None)
    if int(os.environ.get("RANK", "0")) == 0 and not result.stopped_by:
        val = result.last_val
        summary = (f"; validation PSNR {val['val/psnr']:.2f} dB, SSIM {val['val/ssim']:.3f}"
                   if "val/psnr" in val else "")
        print(f"vqforge: trained to step {result.step}{summary}; run directory {result.run_dir} "
              f"(vqforge.load({str(result.run_dir)!r}), vqforge reconstruct --model {result.run_dir} ...)")
    # A run stopped by SIGINT/SIGTERM or its time limit saved its checkpoint: that is a clean exit.
    return 0
