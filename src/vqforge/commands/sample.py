"""`vqforge sample`: draw images from a transformer model, at its trained size or larger (sliding window).

Argument parsing only: the options become one :class:`~vqforge.sampling.request.SampleRequest`
(:func:`.sampling_options.request_from_args`) and :func:`vqforge.sampling.record.sample_to_folder` runs the job and
writes its folder.
"""

from __future__ import annotations

import argparse

from .options import add_sampling_args


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="sample images from a transformer model (any size, sliding window)",
                       description="Sample images with a trained transformer. Writes one PNG per sample, grid.png and "
                                   "settings.json into --out.")
    add_sampling_args(p)
    p.add_argument("--num", type=int, default=None,
                   help="number of samples (default: 8, or one per condition file)")
    p.add_argument("--reject-with", default=None, metavar="CLASSIFIER",
                   help="classifier-based rejection sampling for class-conditional models: draw more candidates and "
                        "keep those the classifier finds most likely to show their class (a classifier .safetensors "
                        "of vqforge.evaluate.classifier, or 'fashion' for the bundled Fashion-MNIST one)")
    p.add_argument("--acceptance", type=float, default=None, metavar="R",
                   help="with --reject-with: the fraction of candidates kept, in (0, 1] (--num / R candidates are "
                        "drawn; default 0.5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import notice
    from ..sampling.record import sample_to_folder
    from .sampling_options import TokenBar, request_from_args

    with TokenBar("sample", args.quiet) as bar:
        result = sample_to_folder(request_from_args(args), args.out, bar, notice)
    plan, (H, W) = result.plan, result.plan.layout.image_hw
    kept = f", the best {plan.count} of {plan.n_drawn} candidates" if plan.reject is not None else ""
    print(f"wrote {plan.count} sample(s) of {H}x{W} px to {args.out}{kept} ({result.tokens_per_second:.0f} tokens/s)")
    return 0
