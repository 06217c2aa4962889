"""`vqforge serve`: a local web app on the bundled models or on any model directory, run directory or checkpoint."""

from __future__ import annotations

import argparse

from .options import add_max_memory, budget_from_args


def add_parser(sub) -> None:
    from ..serve.forms import Limits

    d = Limits()
    p = sub.add_parser("serve", help="a local web app: sample, paint a segmentation map, complete, reconstruct",
                       description="Serve one page (and a JSON API) to sample images, synthesise from a painted "
                                   "segmentation map, complete a masked photo and reconstruct photos, with live "
                                   "progress. Binds to 127.0.0.1 unless --host says otherwise. See docs/serve.md.")
    p.add_argument("--model", nargs="+", default=None, metavar="NAME_OR_DIR",
                   help="bundled model names, model directories, run directories, checkpoints (.pt), taming/NAME or "
                        "hf://ORG/NAME; "
                        "default: every bundled model")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--max-side", type=int, default=d.max_side,
                   help=f"largest image side in pixels (default {d.max_side})")
    p.add_argument("--max-count", type=int, default=d.max_count, help=f"images per job (default {d.max_count})")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help=f"jobs waiting or running at once; more are refused (default {d.max_queue})")
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_mb,
                   help=f"request body size in MB (default {d.max_upload_mb:g})")
    p.add_argument("--max-upload-pixels", type=int, default=d.max_upload_pixels,
                   help=f"pixels of an uploaded image, checked before decoding (default {d.max_upload_pixels})")
    add_max_memory(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import VQForgeError
    from ..serve.engine import bundled_names

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise VQForgeError(f"vqforge serve needs FastAPI and uvicorn ({e.name} is missing): "
                           f"pip install 'vqforge[serve]'") from None
    from ..serve import Limits
    from ..serve import run as serve

    models = args.model or bundled_names()
    if not models:
        raise VQForgeError("no bundled models are installed; give one with --model MODEL_OR_RUN_DIR")
    limits = Limits(max_side=args.max_side, max_count=args.max_count, max_queue=args.max_queue,
                    max_upload_mb=args.max_upload_mb, max_upload_pixels=args.max_upload_pixels)
    budget = budget_from_args(args) if args.max_memory else None  # None: each model's default, on its device
    serve(models, host=args.host, port=args.port, device=args.device, limits=limits, budget=budget)
    return 0
