"""`vqforge evaluate samples`: FID, KID and precision / recall of a sample folder against a reference
(:func:`vqforge.evaluate.samples.evaluate_samples`)."""

from __future__ import annotations

import argparse

from .evaluate_common import add_common, finish, kid_text
from .options import notice


def add_parser(ev) -> None:
    s = ev.add_parser("samples", help="FID, KID, precision/recall of a sample folder against a reference",
                      description="Compare a folder of generated images with a reference folder (searched "
                                  "recursively), or with cached reference statistics (.npz from "
                                  "--save-reference-stats). Sets smaller than 2048 images get a warning and the "
                                  "metrics that make sense for them; a metric that cannot be computed is skipped "
                                  "with its reason, and the JSON is still written.")
    s.add_argument("--samples", required=True,
                   help="folder of generated images: the files its settings.json lists when a sampling command wrote "
                        "it, else the images directly in it")
    s.add_argument("--recursive", action="store_true",
                   help="count every image under --samples, sub-folders included (grid.png never counts)")
    s.add_argument("--reference", required=True, help="reference image folder, or a statistics .npz")
    s.add_argument("--save-reference-stats", default=None, metavar="X.npz",
                   help="write the reference statistics here (with raw features unless --stats-only)")
    s.add_argument("--stats-only", action="store_true",
                   help="save only mu/sigma (small, but KID and precision/recall then need the folder again)")
    s.add_argument("--limit", type=int, default=None, help="use at most this many images of each folder")
    s.add_argument("--no-pr", action="store_true", help="skip precision/recall (it needs more than 3 images per set)")
    add_common(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate.samples import evaluate_samples

    res = evaluate_samples(args.samples, args.reference, recursive=args.recursive, limit=args.limit,
                           batch_size=args.batch_size, device=args.device, inception=args.inception,
                           save_reference_stats=args.save_reference_stats, stats_only=args.stats_only,
                           pr=not args.no_pr, kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                           fid_method=args.fid_method, seed=args.seed, progress=not args.quiet)
    rows = [("samples", f"{res['n_samples']} ({res['samples_chosen']})"), ("reference", res["n_reference"]),
            ("FID", res["fid"]), ("KID", kid_text(res) or "skipped"),
            ("precision", res["precision"] if res["precision"] is not None else "skipped"),
            ("recall", res["recall"] if res["recall"] is not None else "skipped")]
    for k, why in res["skipped"].items():
        notice(f"{k.replace('_', '/')} skipped: {why}")
    for text in res["warnings"]:
        notice(f"warning: {text}")
    return finish(args, res, f"samples {args.samples} vs {args.reference}", rows)
