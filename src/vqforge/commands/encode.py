"""`vqforge encode`: pre-tokenize a dataset once with a VQGAN (and a condition stage) for transformer training.

Writes a token dataset (``meta.json`` + memory-mapped ``.npy`` arrays; format in :mod:`vqforge.data.tokens`).
Images are resized (smallest side to ``--size``, bicubic) and center-cropped (or cut in several random crops);
paired maps use the same geometry. The work is :func:`vqforge.data.encode.encode_job`.
"""

from __future__ import annotations

import argparse

from .options import add_device, add_max_memory, add_out, add_quiet, add_seed, add_trust_option


def add_parser(sub) -> None:
    from ..models.conditioning import encoded_stage_modes

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
    p.add_argument("--cond", choices=encoded_stage_modes(),
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


def run(args: argparse.Namespace) -> int:
    from ..data.encode import encode_job

    out, n = encode_job(args.model, args.data, args.out, cond_stage=args.cond_stage, cond=args.cond,
                        n_labels=args.n_labels, lowres_factor=args.lowres_factor, size=args.size,
                        resize_max=args.resize_max, crops=args.crops, labels=args.labels, cond_data=args.cond_data,
                        seed=args.seed, batch_size=args.batch_size, limit=args.limit, workers=args.workers,
                        device=args.device, progress=not args.quiet, trust=args.trust_checkpoint,
                        max_memory=args.max_memory)
    print(f"wrote {n} token rows to {out}")
    return 0
