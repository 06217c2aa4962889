"""`vqforge train vqgan|transformer|condition ...`: the two stages and the condition stage, one set of flags."""

from __future__ import annotations

from . import train_condition, train_transformer, train_vqgan


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a VQGAN (stage 1), a transformer (stage 2) or a condition stage")
    stages = p.add_subparsers(dest="stage", metavar="STAGE", required=True)
    train_vqgan.add_parser(stages)
    train_transformer.add_parser(stages)
    train_condition.add_parser(stages)
