"""`vqforge evaluate nll`: bits per dim of pre-encoded tokens under a transformer
(:func:`vqforge.evaluate.nll.evaluate_nll`)."""

from __future__ import annotations

import argparse

from .evaluate_common import finish
from .options import add_device, add_quiet, add_trust_option


def add_parser(ev) -> None:
    n = ev.add_parser("nll", help="bits per dim of tokens under a transformer (held-out rows by default)",
                      description="Teacher-forced negative log-likelihood of pre-encoded tokens (vqforge encode). "
                                  "The output says which rows it scored: those the model's training run held out, "
                                  "those it trained on, or a dataset the run did not train on.")
    n.add_argument("--model", required=True, help="transformer model directory, run directory, checkpoint, taming/NAME or hf://ORG/NAME")
    n.add_argument("--data", required=True, help="a tokens directory written by `vqforge encode`")
    n.add_argument("--limit", type=int, default=None, help="use at most this many images")
    n.add_argument("--batch-size", type=int, default=32)
    n.add_argument("--split", choices=("auto", "held-out", "train", "all"), default="auto",
                   help="which rows of --data to score, by the model's training run record: held-out (the rows the "
                        "run validated on), train (the rows it trained on), all; auto: held-out when --data is the "
                        "run's training data with rows held out, else all (the output says which it scored)")
    add_device(n)
    n.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON here")
    add_quiet(n)
    add_trust_option(n)
    n.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate.nll import evaluate_nll

    res = evaluate_nll(args.model, args.data, split=args.split, limit=args.limit, batch_size=args.batch_size,
                       device=args.device, progress=not args.quiet, trust=args.trust_checkpoint)
    table = [("rows scored", f"{res['n_images']}: {res['rows']}"), ("tokens / image", res["tokens_per_image"]),
             ("nats / token", res["nats_per_token"]), ("bits / token", res["bits_per_token"]),
             ("bits / dim", res["bits_per_dim"])]
    return finish(args, res, f"NLL of {args.data} ({res['split']}) under {args.model}", table)
