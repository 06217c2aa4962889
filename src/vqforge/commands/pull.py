"""`vqforge pull`: one of the original's released models, downloaded and converted into the cache once."""

from __future__ import annotations

import argparse

from .options import add_quiet, add_trust_option


def add_parser(sub) -> None:
    p = sub.add_parser("pull", help="download one of the original's released models and convert it once "
                                    "(then --model taming/NAME anywhere)",
                       description="Download one of the original Taming Transformers' released models by name "
                                   "(resumable; checked by size and SHA-256) and convert it into vqforge's model "
                                   "directory under $VQFORGE_HOME (default: the platform's cache folder). "
                                   "`vqforge models --available` lists the names.")
    p.add_argument("name", metavar="NAME", help="a released model (e.g. vqgan_imagenet_f16_16384, sflckr)")
    p.add_argument("--keep-download", action="store_true",
                   help="keep the original's YAML and .ckpt after converting (default: delete them)")
    add_quiet(p, "no download progress bar")
    add_trust_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api import pull

    path = pull(args.name, progress=not args.quiet, keep_download=args.keep_download, trust=args.trust_checkpoint)
    name = args.name.removeprefix("taming/")
    print(f"taming/{name}: {path}\nuse it as --model taming/{name} or vqforge.load('taming/{name}')")
    return 0
