"""Options that several commands share, defined once."""

from __future__ import annotations

import argparse

from ..io import TRUST_OPTION


def add_trust_option(p: argparse.ArgumentParser) -> None:
    """``--trust-checkpoint``: allow a checkpoint that needs full unpickling (off by default)."""
    p.add_argument(TRUST_OPTION, dest="trust_checkpoint", action="store_true",
                   help="allow a checkpoint that holds pickled Python objects beyond tensors (unpickling it runs code "
                        "from the file: only for files from a source you trust)")
