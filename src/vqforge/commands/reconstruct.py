"""`vqforge reconstruct`: encode and decode images with a VQGAN, write PNGs, print PSNR."""

from __future__ import annotations

import argparse

from .options import (add_data, add_device, add_max_memory, add_out, add_quiet, add_trust_option, budget_from_args,
                      check_images_fit)


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
    from tqdm import tqdm

    from ..api import load_vqgan
    from ..data.images import load_image_tensor
    from ..devices import resolve_device, resolve_precision
    from ..imageio import list_images, save_tensor_image
    from ..io import VQForgeError, atomic_dir, check_output_dir, write_json
    from ..metrics import psnr
    from ..models.inference import VQGANRunner

    device = resolve_device(args.device)
    resolve_precision(args.precision, device)  # a clear error before any work
    out_dir = check_output_dir(args.out, "reconstruct output folder", _is_reconstruct_output)
    model = load_vqgan(args.model, "reconstruct", trust=args.trust_checkpoint)
    runner = VQGANRunner(model.to(device), precision=args.precision, compile=args.compile)
    files = list_images(args.data)
    if not files:
        raise VQForgeError(f"{args.data}: no images found")
    from ..models.footprint import F32, vqgan_roundtrip_bytes

    cfg, f = model.config, model.downsample_factor
    held = len(files) * cfg.ddconfig.in_channels * F32  # every input is read first (bounded by the largest's size)
    check_images_fit(files, args.size, f, lambda hw: held * hw[0] * hw[1] + vqgan_roundtrip_bytes(cfg, hw),
                     budget_from_args(args, device))  # before any image is read at its size
    # Read every input before writing anything: a bad file fails the run with no partial output.
    channels = model.config.ddconfig.in_channels  # read as the model was trained (1: gray, 3: RGB)
    inputs = [load_image_tensor(p, size=args.size, multiple_of=model.downsample_factor, channels=channels)
              for p in files]
    results = {}
    # the folder appears complete or not at all (an interrupted run leaves nothing)
    with atomic_dir(out_dir, "reconstruct output folder", _is_reconstruct_output) as tmp:
        for path, x in tqdm(list(zip(files, inputs)), desc="reconstruct", unit="img",
                            disable=args.quiet or len(files) < 2):
            x = x.unsqueeze(0).to(device)
            rec = runner(x).reconstruction.clamp(-1, 1)
            value = float(psnr(rec, x).item())
            results[path.name] = value
            save_tensor_image(tmp / (path.stem + ".png"), rec[0])
            if not args.quiet:
                tqdm.write(f"{path.name}: PSNR {value:.2f} dB")
        mean = sum(results.values()) / len(results)
        write_json(tmp / "psnr.json", {"per_image": results, "mean": mean})
    print(f"mean PSNR over {len(results)} image(s): {mean:.2f} dB ({runner.mode})")
    return 0


def _is_reconstruct_output(path) -> bool:
    """A folder this command wrote before (it holds ``psnr.json``): it may be replaced."""
    return (path / "psnr.json").is_file()
