"""The ``vqforge`` command line: one subcommand per job, each defined in ``vqforge.commands``."""

from __future__ import annotations

import argparse
import re
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


#: a ``key=value`` config override (``model.gpt.n_layer=12``)
OVERRIDE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*=")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a command line; ``key=value`` overrides may stand anywhere after the subcommand (before,
    between or after its flags) and keep their order in ``args.overrides``."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    overrides = [a for a in extras if OVERRIDE.match(a)]
    unknown = [a for a in extras if not OVERRIDE.match(a)]
    command = _chosen_parser(parser, args)
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    if overrides:
        if not hasattr(args, "overrides"):
            command.error(f"this command takes no key=value config overrides: {' '.join(overrides)}")
        args.overrides = list(args.overrides or []) + overrides
    return args


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)command's own parser, whose usage line fits an error in its arguments."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(args, sub.dest, None) if sub is not None else None
        if name not in (sub.choices if sub is not None else {}):
            return parser
        parser = sub.choices[name]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vqforge`` console script."""
    args = parse_args(argv)
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
