"""`vqforge complete`: resample the masked part of an image with a transformer model.

Argument parsing only: the options become one :class:`~vqforge.sampling.request.SampleRequest` with a
:class:`~vqforge.sampling.request.Completion`, and :func:`vqforge.sampling.record.sample_to_folder` runs it.
"""

from __future__ import annotations

import argparse

from .options import add_data, add_sampling_args


def add_parser(sub) -> None:
    p = sub.add_parser("complete", help="complete the masked part of an image with a transformer model",
                       description="Encode the image to tokens, resample the tokens under the mask (a token is "
                                   "resampled when any pixel of its patch is masked) in raster order, keep the others, "
                                   "decode, and put the original pixels back outside the mask (--no-paste-back: the raw "
                                   "decode). Without --size, image and mask are resized (smallest side) and centre-"
                                   "cropped to the trained size; with --size HxW, resized to it. Any conditioning "
                                   "mode (--class, --cond) and guidance (--cfg) work as in `vqforge sample`. Writes "
                                   "one PNG per completion, mask.png, grid.png (input first) and settings.json.")
    add_data(p, "the image to complete", metavar="IMAGE")
    p.add_argument("--mask", required=True, help="mask image of the same size: white (> 127) pixels are resampled")
    p.add_argument("--num", type=int, default=1, help="completions to draw (default 1)")
    p.add_argument("--no-paste-back", dest="paste_back", action="store_false",
                   help="write the raw decode: by default the original pixels are put back outside the mask (with "
                        "a seam feathered over half a token inside it), so that only the masked part changes; the "
                        "raw decode redraws the kept part too, as the first stage's reconstruction")
    add_sampling_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import notice
    from ..data.images import read_pair
    from ..sampling.record import sample_to_folder
    from ..sampling.request import Completion
    from .sampling_options import TokenBar, request_from_args

    def read(hw: tuple[int, int], channels: int):  # image (C, H, W), mask (H, W) at the job's size
        return read_pair(args.data, args.mask, hw, exact=args.size is not None, channels=channels)

    completion = Completion(read, args.paste_back, image_name=str(args.data), mask_name=str(args.mask))
    with TokenBar("complete", args.quiet) as bar:
        result = sample_to_folder(request_from_args(args, completion), args.out, bar, notice)
    plan, (H, W) = result.plan, result.plan.layout.image_hw
    print(f"wrote {plan.count} completion(s) of {H}x{W} px ({plan.n_steps} of {plan.layout.n_tokens} tokens "
          f"resampled) to {args.out}")
    return 0
