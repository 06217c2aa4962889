"""`vqforge reconstruct`: encode and decode images with a VQGAN, write PNGs, print PSNR."""

from __future__ import annotations

import argparse

from .options import add_data, add_device, add_out, add_quiet


def add_parser(sub) -> None:
    p = sub.add_parser("reconstruct", help="reconstruct images with a VQGAN and report PSNR",
                       description="Encode each image to codebook indices and decode it again. Writes one PNG per image "
                                   "into --out and prints PSNR per image and the mean (psnr.json).")
    p.add_argument("--model", required=True, help="model directory, run directory or checkpoint (.pt)")
    add_data(p, "an image file or a folder of images")
    add_out(p, "output folder")
    p.add_argument("--size", type=int, default=None,
                   help="resize the shorter side to this many pixels first (default: each image's own size, cropped "
                        "to a multiple of the downsampling factor)")
    add_device(p)
    add_quiet(p, "no progress bar and no per-image lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from ..api import load
    from ..devices import resolve_device
    from ..imageio import list_images, load_image_tensor, save_tensor_image
    from ..io import VQForgeError, write_json
    from ..metrics import psnr
    from ..models.vqgan import VQGAN

    device = resolve_device(args.device)
    model = load(args.model)
    if not isinstance(model, VQGAN):
        raise VQForgeError(f"{args.model}: reconstruct needs a VQGAN, this is a {type(model).__name__}")
    model = model.to(device).eval()
    files = list_images(args.data)
    if not files:
        raise VQForgeError(f"{args.data}: no images found")
    # Read every input before writing anything: a bad file fails the run with no partial output.
    inputs = [load_image_tensor(p, size=args.size, multiple_of=model.downsample_factor) for p in files]
    out_dir = Path(args.out)
    results = {}
    for path, x in tqdm(list(zip(files, inputs)), desc="reconstruct", unit="img", disable=args.quiet or len(files) < 2):
        x = x.unsqueeze(0).to(device)
        with torch.inference_mode():
            rec = model(x).reconstruction.clamp(-1, 1)
        value = float(psnr(rec, x).item())
        results[path.name] = value
        save_tensor_image(out_dir / (path.stem + ".png"), rec[0])
        if not args.quiet:
            tqdm.write(f"{path.name}: PSNR {value:.2f} dB")
    mean = sum(results.values()) / len(results)
    write_json(out_dir / "psnr.json", {"per_image": results, "mean": mean})
    print(f"mean PSNR over {len(results)} image(s): {mean:.2f} dB")
    return 0
