"""Options that several commands share, defined once.

One flag vocabulary for the commands that are not trainers (convert, reconstruct, encode, sample, complete,
evaluate): ``--data`` (what goes in), ``--out`` (what comes out), ``--model``, ``--size``, ``--device``,
``--quiet``, ``--seed``.

Older spellings (``--input``, ``--output``, ``--no-progress``) still work: they set the same value and print a
one-line notice naming the new spelling. They are left out of ``--help`` and usage lines.
"""

from __future__ import annotations

import argparse

from ..config import notice
from ..data.images import size_multiple  # noqa: F401 - `sample --size Nx` parses with it
from ..io import TRUST_OPTION


class _Spelled(argparse.Action):
    """A flag with old spellings: stores its value (or True for a switch, ``nargs=0``); an old spelling also
    prints a notice. Only the new spelling is shown in help and usage."""

    def __init__(self, option_strings, dest, old=(), nargs=None, const=None, **kwargs):
        super().__init__(option_strings, dest, nargs=nargs, const=const, **kwargs)
        self.old = tuple(old)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in self.old:
            notice(f"{option_string} is now {self.option_strings[0]}")
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_flag(p: argparse.ArgumentParser, new: str, *old: str, switch: bool = False, **kwargs) -> argparse.Action:
    """Add flag ``new`` that ``old`` spellings also set (see the module docs). ``switch``: an on/off flag."""
    if switch:
        kwargs.update(nargs=0, const=True, default=False)
    action = p.add_argument(new, *old, action=_Spelled, old=old, **kwargs)
    # argparse finds options by every string registered above; help and usage show only the new spelling.
    action.option_strings = [new]
    return action


def add_out(p: argparse.ArgumentParser, help: str, metavar: str = "DIR") -> None:
    """``--out`` (old spelling ``--output``)."""
    add_flag(p, "--out", "--output", required=True, metavar=metavar, help=help)


def add_data(p: argparse.ArgumentParser, help: str, metavar: str | None = None) -> None:
    """``--data`` (old spelling ``--input``)."""
    add_flag(p, "--data", "--input", required=True, metavar=metavar, help=help)


def add_quiet(p: argparse.ArgumentParser, help: str = "no progress bars") -> None:
    """``--quiet`` (old spelling ``--no-progress``)."""
    add_flag(p, "--quiet", "--no-progress", switch=True, help=help)


def add_device(p: argparse.ArgumentParser) -> None:
    """``--device`` (resolved by :func:`vqforge.devices.resolve_device`)."""
    p.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda, cuda:N")


def add_seed(p: argparse.ArgumentParser, what: str = "random seed") -> None:
    """``--seed`` (default 0)."""
    p.add_argument("--seed", type=int, default=0, help=f"{what} (default 0)")


def add_trust_option(p: argparse.ArgumentParser) -> None:
    """``--trust-checkpoint``: allow a checkpoint that needs full unpickling (off by default)."""
    p.add_argument(TRUST_OPTION, dest="trust_checkpoint", action="store_true",
                   help="allow a checkpoint that holds pickled Python objects beyond tensors (unpickling it runs code "
                        "from the file: only for files from a source you trust)")


def add_max_memory(p: argparse.ArgumentParser) -> None:
    """``--max-memory``: the memory budget of one job (:class:`vqforge.memory.Budget`)."""
    from ..memory import DEFAULT_FRACTION

    p.add_argument("--max-memory", default=None, metavar="BYTES",
                   help=f"refuse work whose estimated peak memory exceeds this, e.g. 4GiB or 512MiB (default: "
                        f"{DEFAULT_FRACTION * 100:.0f}%% of the memory available when the command starts); the refusal "
                        f"names the largest size that fits")


def budget_from_args(args: argparse.Namespace, device=None):
    """The job's :class:`vqforge.memory.Budget` from ``--max-memory`` (default: a share of what is available)."""
    from ..memory import Budget

    return Budget.from_option(getattr(args, "max_memory", None), device)
