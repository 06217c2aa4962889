"""`vqforge shard`: a folder of images (or a token dataset) -> webdataset tar shards for many machines."""

from __future__ import annotations

import argparse

from .options import add_out, add_seed


def add_parser(sub) -> None:
    p = sub.add_parser("shard", help="write images or a token dataset as webdataset tar shards (for many machines)",
                       description="Write an image folder / file list / glob (with the class of each sub-folder and "
                                   "optional condition maps), or a token dataset from `vqforge encode`, as webdataset "
                                   "tar shards plus shards.json. Every trainer and `encode` then take "
                                   "--data 'DIR/shard-{000000..000099}.tar' (or --data DIR). Needs webdataset "
                                   "(pip install 'vqforge[shards]'). See docs/scaling.md.")
    p.add_argument("--data", required=True, help="image folder, .txt file list or glob; or a token dataset folder")
    add_out(p, "shard folder to write (shard-NNNNNN.tar, val-NNNNNN.tar, shards.json)")
    p.add_argument("--per-shard", type=int, default=1000, metavar="N", help="samples per shard (default 1000)")
    p.add_argument("--labels", choices=("none", "folders"), default="none",
                   help="folders: each image's class is its sub-folder (stored as cls)")
    p.add_argument("--maps", default=None, metavar="DIR",
                   help="condition maps (segmentation/depth) with the images' relative paths, .png or .npy")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="hold out this fraction for validation as val-NNNNNN.tar (whole source images; default 0)")
    add_seed(p, "seed of the validation split")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.shard_writer import shard_dataset

    w = shard_dataset(args.data, args.out, per_shard=args.per_shard, labels=args.labels == "folders", maps=args.maps,
                      val_fraction=args.val_fraction, seed=args.seed)
    print(f"wrote {w.train} samples in {w.n_train_shards} shard(s)"
          + (f" and {w.val} held out in {w.n_val_shards}" if w.n_val_shards else "") + f" to {w.out}")
    print(f"train on them with --data '{w.pattern}' (or --data {w.out})")
    return 0
