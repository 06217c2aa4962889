"""The command line of `vqforge sample` and `vqforge complete` (their flags: :func:`.options.add_sampling_args`)
as one :class:`~vqforge.sampling.request.SampleRequest`, and their progress bar: the sampling job does the rest."""

from __future__ import annotations

from .options import budget_from_args, decode_options_from_args, parse_hw


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
    from ..api import load_transformer
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
