"""`vqforge evaluate recon`: PSNR, SSIM, LPIPS, rFID / KID and codebook use of a VQGAN
(:func:`vqforge.evaluate.reconstruction.evaluate_recon`)."""

from __future__ import annotations

import argparse

from .evaluate_common import add_common, finish, kid_text
from .options import add_max_memory, add_trust_option, notice


def add_parser(ev) -> None:
    r = ev.add_parser("recon", help="PSNR, SSIM, LPIPS, reconstruction FID/KID, codebook usage of a VQGAN",
                      description="Reconstruct every image of --data with the VQGAN and measure PSNR, SSIM, LPIPS "
                                  "(when its weights exist; otherwise reported as skipped), FID and KID between the "
                                  "inputs and their reconstructions, codebook usage and perplexity.")
    r.add_argument("--model", required=True, help="VQGAN model directory, run directory, checkpoint, taming/NAME or hf://ORG/NAME")
    r.add_argument("--data", required=True, help="an image folder (searched recursively) or one image")
    r.add_argument("--size", type=int, default=None,
                   help="resize the shorter side to SIZE and centre-crop SIZE x SIZE (default: the size the model was "
                        "trained at; 0: keep each image's size, cropped to a multiple of the downsampling factor)")
    r.add_argument("--limit", type=int, default=None, help="use at most this many images (sorted order)")
    r.add_argument("--no-fid", action="store_true", help="skip reconstruction FID/KID (no Inception pass)")
    r.add_argument("--lpips-vgg", default=None, help="VGG16 ImageNet weights for LPIPS (vgg16-397923af.pth)")
    r.add_argument("--lpips-heads", default=None, help="LPIPS v0.1 heads (lpips/weights/v0.1/vgg.pth)")
    add_trust_option(r)
    add_max_memory(r)
    add_common(r)
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate.reconstruction import evaluate_recon

    res = evaluate_recon(args.model, args.data, size=args.size, limit=args.limit, batch_size=args.batch_size,
                         device=args.device, fid=not args.no_fid, inception=args.inception,
                         lpips_vgg=args.lpips_vgg, lpips_heads=args.lpips_heads, kid_subsets=args.kid_subsets,
                         kid_subset_size=args.kid_subset_size, fid_method=args.fid_method, seed=args.seed,
                         progress=not args.quiet, trust=args.trust_checkpoint, max_memory=args.max_memory)
    rows = [("images", res["n_images"]), ("PSNR (dB)", res["psnr"]), ("SSIM", res["ssim"]),
            ("LPIPS", res["lpips"] if res["lpips"] is not None else "skipped"),
            ("rFID", res["rfid"] if res["rfid"] is not None else "skipped"), ("KID", kid_text(res)),
            ("codes used", f"{res['codes_used']} / {res['n_codes']} ({100 * res['codebook_usage']:.1f}%)"),
            ("perplexity", res["perplexity"])]
    if res["lpips"] is None:
        notice(f"LPIPS skipped: {res['lpips_skipped']}")
    for text in res["warnings"]:
        notice(f"warning: {text}")
    return finish(args, res, f"reconstruction of {args.data} by {args.model}", rows)
