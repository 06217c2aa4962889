"""`vqforge evaluate` (not implemented yet)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="(not implemented yet)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import VQForgeError

    raise VQForgeError("vqforge evaluate is not implemented yet")
