"""``python -m vqforge.demo``: the same as ``vqforge demo`` (an entry point: it may import the command line)."""

import sys

from vqforge.cli import main

sys.exit(main(["demo", *sys.argv[1:]]))
