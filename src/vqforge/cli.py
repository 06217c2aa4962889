"""The ``vqforge`` command line: one subcommand per job, each defined in ``vqforge.commands``."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .commands import ALL_COMMANDS
from .config import ConfigError
from .io import VQForgeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqforge", description="Taming Transformers: VQGAN + transformer, faithful and fast.")
    parser.add_argument("--version", action="version", version=f"vqforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in ALL_COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vqforge`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (VQForgeError, ConfigError, FileNotFoundError) as e:
        print(f"vqforge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vqforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
