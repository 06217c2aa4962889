"""`vqforge demo`: the whole paper on the bundled models (reconstruction, class-conditional samples with guidance,
landscapes from segmentation maps at the trained size and far larger, completion, FID / KID), as one HTML page."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the whole paper on the bundled models and write OUT/index.html",
                       description="Reconstruct held-out photos, sample every Fashion-MNIST class with and without "
                                   "guidance, synthesise landscapes from held-out segmentation maps at the trained "
                                   "size and, by the sliding window, several times larger, complete a masked photo, "
                                   "and measure FID / KID; write OUT/index.html (viewable offline) with every input, "
                                   "output, setting, number and timing. A few minutes on a 2-core CPU.")
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--quick", action="store_true", help="a small version of every part (seconds; for tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--fashion", default="fashion", help="class-conditional model (default: the bundled 'fashion')")
    p.add_argument("--landscapes", default="landscapes",
                   help="segmentation-conditioned model (default: the bundled 'landscapes')")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--retrain", action="store_true",
                   help="print how the bundled models are reproduced from scratch (bench/retrain_bundled.sh) and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..demo import DemoSizes, run_demo

    if args.retrain:
        print("The bundled models are reproduced from scratch, with vqforge's own commands, by\n"
              "  bench/retrain_bundled.sh [WORK_DIR] [DATA_ROOT]\n"
              "from a vqforge checkout (steps, data, wall times and the machine: docs/models.md). Then\n"
              "  vqforge demo --fashion WORK_DIR/fashion_gpt --landscapes WORK_DIR/landscape_gpt")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    run_demo(args.out, DemoSizes.quick() if args.quick else DemoSizes(), seed=args.seed, progress=not args.quiet,
             fashion=args.fashion, landscapes=args.landscapes)
    return 0
