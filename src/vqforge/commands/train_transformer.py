"""`vqforge train transformer` (not implemented yet)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("transformer", help="(not implemented yet)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import VQForgeError

    raise VQForgeError("vqforge train transformer is not implemented yet")
