"""`vqforge encode`: pre-tokenize a dataset once with a VQGAN (and a condition stage) for transformer training.

Writes a token dataset (``meta.json`` + memory-mapped ``.npy`` arrays; format in :mod:`vqforge.data.tokens`).
Images are resized (smallest side to ``--size``, bicubic) and center-cropped (or cut in several random crops);
paired maps use the same geometry. The work is :func:`vqforge.data.encode.encode_data`.
"""

from __future__ import annotations

import argparse

from .options import (add_device, add_max_memory, add_out, add_quiet, add_seed, add_trust_option, budget_from_args,
                      size_multiple)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "encode", help="pre-tokenize a dataset with a VQGAN (for `vqforge train transformer`)",
        description="Encode every image of DATA into first-stage tokens (plus class labels and condition tokens) "
                    "and write a token dataset to TOKENS_DIR.")
    p.add_argument("--model", required=True, metavar="VQGAN_DIR",
                   help="first-stage VQGAN (model/run dir, taming/NAME, hf://ORG/NAME), or a transformer model dir (its "
                        "stages are used)")
    p.add_argument("--data", required=True, help="image folder/list/glob, tar shards ('DIR/shard-{000000..000099}.tar' "
                                                 "or DIR: vqforge shard), or fashion-mnist[:train|test]")
    add_out(p, "token dataset folder to write", metavar="TOKENS_DIR")
    p.add_argument("--cond-stage", metavar="DIR", help="condition VQGAN for spatial conditions")
    p.add_argument("--cond", choices=stage_modes(),
                   help="condition to encode with --cond-stage (default: from its input channels: 1 depth, 3 lowres, "
                        "else segmentation)")
    p.add_argument("--cond-data", metavar="DIR", help="folder of paired maps (segmentation/depth), same relative "
                                                      "paths as the images with a .png suffix")
    p.add_argument("--n-labels", type=int, help="segmentation label count (default: cond stage input channels)")
    p.add_argument("--lowres-factor", type=int, default=None, help="lowres: how much smaller the condition is "
                                                                    "(default 4)")
    p.add_argument("--labels", help="'folders' (ImageFolder sub-folder names), a file of 'relative/path label' lines, "
                                    "or 'shards' (the classes stored in tar shards)")
    p.add_argument("--size", type=int, help="image side after resize + center crop (default: the size the model was "
                                          "trained at; Fashion-MNIST: smaller = area downscale, larger = padding)")
    p.add_argument("--crops", type=int, default=1,
                   help="random crops per image (default 1 = one centre crop). Several crops of larger images teach "
                        "the transformer windows away from the centre, which sliding-window sampling needs")
    p.add_argument("--resize-max", default="0", metavar="PX_OR_Nx",
                   help="with --crops > 1: resize the smallest side to a size drawn from [--size, RESIZE_MAX] "
                        "before each crop (crops at several scales; default: --size); Nx: N times --size (e.g. 3x)")
    add_seed(p, "seed of the random crops")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, help="encode only the first N images")
    p.add_argument("--workers", type=int, default=0, help="processes decoding images in parallel")
    add_device(p)
    add_quiet(p, "no progress bar")
    add_max_memory(p)
    add_trust_option(p)
    p.set_defaults(func=run)


def stage_modes() -> list[str]:
    """Names of the conditioning modes whose condition goes through a condition-stage VQGAN."""
    from ..models.conditioning import MODES, StageCondition

    return [name for name, mode in MODES.items() if issubclass(mode, StageCondition)]


def _pixels(text: str, size: int, what: str) -> int:
    """A side in pixels: 'PX', or 'Nx' for N times ``size``."""
    from ..io import VQForgeError

    times = size_multiple(text)
    try:
        value = round(times * size) if times is not None else int(text.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise VQForgeError(f"{what} {text!r}: expected pixels (e.g. 96) or a multiple of --size (e.g. 3x)")
    return value


def check_memory(model, condition, size: int, resize_max: int, batch: int, budget) -> None:
    """Refuse in one line (:class:`vqforge.memory.OverBudget`), before any image is read, an encoding whose
    batches of ``size`` crops (and photos resized to ``resize_max``) would not fit ``budget``; the refusal names
    the largest --size that fits."""
    from ..memory import largest_fitting, refusal
    from ..models.footprint import vqgan_encode_job_bytes

    stage = getattr(condition, "stage", None)
    cond = stage.config if stage is not None else None

    def need(side: int, rmax: int) -> int:
        return vqgan_encode_job_bytes(model.config, side, batch, rmax, cond)

    if need(size, resize_max) <= budget.bytes:
        return
    f = model.downsample_factor
    fit = largest_fitting(lambda t: need(t * f, 0), budget.bytes, 1, max(1, size // f))
    what = f"--size {size}" + (f" --resize-max {resize_max}" if resize_max > size else "") + f" (--batch-size {batch})"
    raise refusal(what, need(size, resize_max), budget, None if fit is None else f"--size {fit * f}")


def run(args: argparse.Namespace) -> int:
    from ..api import load
    from ..data.encode import encode_data, encoding_stages
    from ..data.tokens import is_token_dir
    from ..devices import resolve_device
    from ..io import VQForgeError, check_output_dir

    if args.batch_size < 1 or args.workers < 0:
        raise VQForgeError(f"--batch-size must be >= 1 and --workers >= 0, got {args.batch_size} and {args.workers}")
    device = resolve_device(args.device)
    check_output_dir(args.out, "token dataset", is_token_dir)  # refused before any work, not after encoding
    model = load(args.model, trust=args.trust_checkpoint)
    stage = load(args.cond_stage, trust=args.trust_checkpoint) if args.cond_stage else None
    settings = {k: v for k, v in (("n_labels", args.n_labels), ("lowres_factor", args.lowres_factor)) if v}
    model, condition, cond_source, size = encoding_stages(model, args.model, stage, args.cond_stage or "", args.cond,
                                                          args.size, **settings)
    resize_max = _pixels(args.resize_max, size, "--resize-max")
    check_memory(model, condition, size, resize_max, args.batch_size, budget_from_args(args, device))
    out, n = encode_data(model, args.data, args.out, size=size, condition=condition, cond_data=args.cond_data,
                         labels=args.labels, crops=args.crops, resize_max=resize_max, seed=args.seed,
                         limit=args.limit, source_model=args.model, cond_source=cond_source,
                         batch_size=args.batch_size, device=device, workers=args.workers,
                         progress=not args.quiet)
    print(f"wrote {n} token rows to {out}")
    return 0
