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


# ------------------------------------------------------------------------ sample / complete (the sampling job)
def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """Options shared by `sample` and `complete`."""
    p.add_argument("--model", required=True, help="transformer model directory, run directory, checkpoint (.pt), bundled name, "
                   "taming/NAME (the original's released models: vqforge models --available) or hf://ORG/NAME[@REV]")
    add_out(p, "output folder (PNGs, grid.png, settings.json)")
    p.add_argument("--class", dest="classes", nargs="+", default=None, metavar="C",
                   help="class label(s) for class-conditional models, as ids or names; samples cycle through them "
                        "(default: cycle through all classes)")
    p.add_argument("--cond", default=None, metavar="MAP_OR_DIR",
                   help="condition file or folder for spatial models (segmentation: label-id PNG; depth: float32 "
                        "RGBA PNG, .npy or grayscale PNG; edges: a photo, its edges are detected; lowres: the "
                        "low-resolution image); samples cycle through the files")
    p.add_argument("--size", default=None, metavar="HxW",
                   help="output size in pixels, a multiple of the downsampling factor, or Nx for N times the trained "
                        "size (default: the trained size; condition files are resized to it); larger than trained "
                        "uses the sliding window")
    p.add_argument("--window", default=None, metavar="HxW",
                   help="sliding window in tokens (default: the trained grid, trained size / downsampling factor)")
    p.add_argument("--cond-encoding", choices=("window", "whole"), default="window",
                   help="how a spatial condition is encoded under a sliding window: window (default) = each "
                        "window's own crop, as the training crops were; whole = the whole map at once, then cut "
                        "into windows (the original's way)")
    p.add_argument("--top-k", type=int, default=None,
                   help="keep the k most likely tokens (0 = off; default: the model card's, e.g. the bundled "
                        "models' (`vqforge models`), else 100)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (default: the card's, else off)")
    p.add_argument("--temperature", type=float, default=None,
                   help="softmax temperature (default: the card's, else 1.0)")
    p.add_argument("--cfg", type=float, default=None, metavar="S",
                   help="classifier-free guidance scale, for models trained with a null condition (a NULL class, "
                        "or cond.null_condition) (default: the card's, else 0 = off)")
    p.add_argument("--greedy", action="store_true", help="take the most likely token instead of sampling")
    add_seed(p)
    p.add_argument("--batch-size", type=batch_size_arg, default="auto",
                   help="samples per batch, or auto (default): the largest (at most 64) whose job fits the memory "
                        "budget by its estimate (vqforge.sampling.memory.auto_batch_size)")
    add_max_memory(p)
    p.add_argument("--precision", choices=("auto", "bf16", "fp32", "int8", "int4"), default="auto",
                   help="arithmetic of the transformer: fp32 = the exact path; bf16 (CUDA; CPUs with AVX512-BF16/AMX: "
                        "prepacked bf16 weights); int8 / int4 = weight-only quantised linear layers (per channel / "
                        "per --int4-group channels; docs/sampling.md has their quality); auto (default) = bf16 on "
                        "CUDA, and on a CPU the fastest of fp32, bf16 and int8, timed on the model once")
    p.add_argument("--int4-group", type=int, default=32, choices=(32, 64, 128, 256),
                   help="input channels sharing an int4 scale and zero point (default 32)")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile the decode step: auto = on CUDA (bf16, CUDA graphs); on = also the fp32 path on "
                        "any device (inductor; slower than eager on a CPU in docs/benchmarks.md); the packed bf16 "
                        "CPU path is never compiled")
    p.add_argument("--no-compile", action="store_true", help=argparse.SUPPRESS)  # old spelling of --precision fp32
    add_device(p)
    add_quiet(p, "no progress bar")
    add_trust_option(p)


def batch_size_arg(text: str):
    """--batch-size: a positive number or 'auto' (kept as the string)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of samples or auto") from None


def parse_hw(text: str | None, what: str, relative: bool = False):
    """'HxW' or 'S' -> (H, W); with ``relative`` also 'Nx' -> N (a float: N times the trained size, e.g. '2x');
    None stays None."""
    from ..io import VQForgeError

    if text is None:
        return None
    text = text.strip().lower()
    times = size_multiple(text) if relative else None
    if times is not None and times > 0:
        return times
    parts = text.replace("*", "x").split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        hw = ()
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or min(hw) <= 0:
        hint = ", or Nx for N times the trained size (e.g. 2x)" if relative else ""
        raise VQForgeError(f"{what} {text!r}: expected HxW (e.g. 256x512) or one positive number{hint}")
    return hw


def decode_options_from_args(args):
    """--precision / --compile (and the old --no-compile, with a notice) -> DecodeOptions."""
    from ..io import VQForgeError
    from ..sampling.generate import DecodeOptions

    precision, compile_ = args.precision, {"auto": None, "on": True, "off": False}[args.compile]
    if args.no_compile:
        notice("--no-compile is now --precision fp32 --compile off (the exact path)")
        precision, compile_ = "fp32", False
    try:
        return DecodeOptions(precision, compile_, args.int4_group)
    except ValueError as e:
        raise VQForgeError(f"--precision: {e}") from None
