"""`vqforge train vqgan|transformer|segmentation ...`: the two training stages (and the segmentation condition stage)."""

from __future__ import annotations

from . import train_segmentation, train_transformer, train_vqgan


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a VQGAN (stage 1) or a transformer (stage 2)")
    stages = p.add_subparsers(dest="stage", metavar="STAGE", required=True)
    train_vqgan.add_parser(stages)
    train_transformer.add_parser(stages)
    train_segmentation.add_parser(stages)
