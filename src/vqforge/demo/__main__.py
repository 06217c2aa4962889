"""``python -m vqforge.demo``: the same as ``vqforge demo``."""

import sys

from . import main

sys.exit(main(sys.argv[1:]))
