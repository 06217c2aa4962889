"""The options `vqforge sample` and `vqforge complete` share, and their translation into one
:class:`~vqforge.sampling.request.SampleRequest` (the sampling job does the rest)."""

from __future__ import annotations

import argparse

from .options import (add_device, add_max_memory, add_out, add_quiet, add_seed, add_trust_option, budget_from_args,
                      notice, size_multiple)


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
                   help="samples per batch, or auto (default): the largest (at most 32) whose job fits the memory "
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


def load_transformer(path: str, device, trust: bool = False):
    """The transformer model at ``path`` on ``device`` (a one-line error for any other kind of model)."""
    from ..api import load
    from ..io import VQForgeError
    from ..models.transformer import Net2NetTransformer

    model = load(path, trust=trust)
    if not isinstance(model, Net2NetTransformer):
        raise VQForgeError(f"{path}: sampling needs a transformer model, this is a {type(model).__name__}")
    return model.to(device).eval()


def rejection_from_args(args):
    """--reject-with / --acceptance -> a :class:`~vqforge.sampling.request.Rejection`, or None without them."""
    from ..io import VQForgeError
    from ..sampling.request import Rejection

    if getattr(args, "reject_with", None) is None:
        if getattr(args, "acceptance", None) is not None:
            raise VQForgeError("--acceptance needs --reject-with CLASSIFIER")
        return None
    from ..evaluate.classifier import DEFAULT_WEIGHTS, class_probability, load_classifier

    classifier, _ = load_classifier(DEFAULT_WEIGHTS if args.reject_with == "fashion" else args.reject_with)
    return Rejection(0.5 if args.acceptance is None else args.acceptance,
                     lambda images, labels: class_probability(classifier, images, labels), args.reject_with)


def request_from_args(args, completion=None):
    """The :class:`~vqforge.sampling.request.SampleRequest` of a `sample` / `complete` command line, checked in
    the order a user's mistakes are cheapest to report: the precision, ``--num``, the output folder (before the
    model is looked for), the model. ``completion``: what `complete` completes."""
    from ..devices import resolve_device
    from ..io import VQForgeError
    from ..sampling.generate import decode_path
    from ..sampling.record import check_output
    from ..sampling.request import SampleRequest

    device = resolve_device(args.device)
    decoding = decode_options_from_args(args)
    decode_path(device, decoding, measure=False)  # an unsupported --precision fails here, before any work
    if args.num is not None and args.num < 1:
        raise VQForgeError("--num must be >= 1")
    if args.batch_size != "auto" and args.batch_size < 1:
        raise VQForgeError("--batch-size must be >= 1")
    check_output(args.out)
    rejection = rejection_from_args(args)
    model = load_transformer(args.model, device, args.trust_checkpoint)
    return SampleRequest(
        model, count=args.num, classes=tuple(args.classes) if args.classes else None, cond=args.cond,
        size=parse_hw(args.size, "--size", relative=True), window=parse_hw(args.window, "--window"),
        cond_encoding=args.cond_encoding, top_k=args.top_k, top_p=args.top_p, temperature=args.temperature,
        cfg=args.cfg, greedy=args.greedy, seed=args.seed,
        batch_size=None if args.batch_size == "auto" else args.batch_size,
        budget=budget_from_args(args, device), decoding=decoding, completion=completion, rejection=rejection,
        name=str(args.model))


class TokenBar:
    """The commands' progress bar over a job's tokens (a sampling job's progress callback); nothing with
    ``quiet``. Use as a context manager: the bar closes when the job ends, finished or not."""

    def __init__(self, desc: str, quiet: bool):
        self.desc, self.quiet, self.bar = desc, quiet, None

    def __call__(self, step) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=step.total, desc=self.desc, unit="tok", unit_scale=True, disable=self.quiet)
        self.bar.update(step.done - self.bar.n)

    def __enter__(self) -> "TokenBar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
