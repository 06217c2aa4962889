"""`vqforge push`: a model directory or training run to the Hugging Face Hub, with a generated model card."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("push", help="upload a model directory or training run to the Hugging Face Hub (hf://ORG/NAME)",
                       description="Upload a vqforge model directory (model.yaml + model.safetensors), or the model "
                                   "of a training run written as one, to the Hugging Face Hub with a model card "
                                   "generated from what the run recorded (data, steps, metrics). Needs "
                                   "huggingface_hub (pip install 'vqforge[hub]') and a login (`hf auth login`). "
                                   "Load it anywhere with --model hf://ORG/NAME.")
    p.add_argument("model", metavar="MODEL_DIR_OR_RUN",
                   help="model directory, run directory, checkpoint or bundled name")
    p.add_argument("target", metavar="hf://ORG/NAME", help="the Hub repository (created if absent)")
    p.add_argument("--dry-run", action="store_true", help="only show what would be uploaded (files and model card)")
    p.add_argument("--stage", metavar="DIR", default=None,
                   help="write the upload (model files and README.md) into DIR and keep it")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", default=None, help="branch to upload to (default: main)")
    p.add_argument("--token", default=None, help="Hub token (default: the one `hf auth login` saved)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api import push

    result = push(args.model, args.target, out=args.stage, dry_run=args.dry_run, private=args.private,
                  revision=args.revision, token=args.token)
    print(("would upload to " if result.url is None else "uploaded to ") + args.target + ":")
    for name, size in result.files:
        print(f"  {name} ({size / 2**20:.2f} MiB)")
    if result.url is None:
        print("\nmodel card (README.md):\n" + result.card + "\n(dry run: nothing was uploaded)")
    else:
        print(result.url)
    return 0
