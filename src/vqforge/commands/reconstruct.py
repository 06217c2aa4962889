"""`vqforge reconstruct`: encode and decode images with a VQGAN, write PNGs, print PSNR
(:func:`vqforge.evaluate.reconstruction.reconstruct_files`)."""

from __future__ import annotations

import argparse

from .options import add_data, add_device, add_max_memory, add_out, add_quiet, add_trust_option


def add_parser(sub) -> None:
    p = sub.add_parser("reconstruct", help="reconstruct images with a VQGAN and report PSNR",
                       description="Encode each image to codebook indices and decode it again. Writes one PNG per image "
                                   "into --out and prints PSNR per image and the mean (psnr.json).")
    p.add_argument("--model", required=True, help="model directory, run directory, checkpoint (.pt), bundled name, taming/NAME or hf://ORG/NAME")
    add_data(p, "an image file or a folder of images")
    add_out(p, "output folder")
    p.add_argument("--size", type=int, default=None,
                   help="resize the shorter side to this many pixels first (default: each image's own size, cropped "
                        "to a multiple of the downsampling factor)")
    add_device(p)
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="auto: bf16 (with channels_last) where the device runs it natively (CUDA; CPUs with "
                        "AVX512-BF16/AMX), else fp32; fp32: the exact path, the original's numbers")
    p.add_argument("--compile", action="store_true", help="torch.compile encoder and decoder (pays off on many "
                                                          "images of one size)")
    add_quiet(p, "no progress bar and no per-image lines")
    add_max_memory(p)
    add_trust_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate.reconstruction import reconstruct_files

    done = reconstruct_files(args.model, args.data, args.out, size=args.size, device=args.device,
                             precision=args.precision, compile=args.compile, progress=not args.quiet,
                             trust=args.trust_checkpoint, max_memory=args.max_memory)
    print(f"mean PSNR over {len(done.psnr)} image(s): {done.mean:.2f} dB ({done.mode})")
    return 0
