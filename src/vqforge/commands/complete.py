"""`vqforge complete`: resample the masked part of an image with a transformer model."""

from __future__ import annotations

import argparse

from .options import add_data
from .sample import add_sampling_args


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
    import time

    import torch
    from tqdm import tqdm

    from .. import __version__
    from ..data.conditions import condition_files, condition_inputs
    from ..data.images import read_pair
    from ..devices import resolve_device
    from ..imageio import GRID_NAME, SETTINGS_NAME, save_grid, save_tensor_image
    from ..io import VQForgeError, atomic_dir, check_output_dir, write_json
    from ..sampling.complete import token_mask
    from ..sampling.generate import decode_path
    from ..sampling.pipeline import draw_batches
    from .sample import (OUTPUT_KIND, check_label_sets, check_trained_size, classes_used, fit_batch,
                         decode_options_from_args, is_sample_folder, load_transformer, parse_hw, plan,
                         settings_from_args, write_samples)

    device = resolve_device(args.device)
    settings = settings_from_args(args)
    decoding = decode_options_from_args(args)
    decode_path(device, decoding, measure=False)  # an unsupported --precision fails here, before any work
    if args.num < 1:
        raise VQForgeError("--num must be >= 1")
    out_dir = check_output_dir(args.out, OUTPUT_KIND, is_sample_folder)
    model = load_transformer(args.model, device, args.trust_checkpoint)
    size = parse_hw(args.size, "--size", model.trained_hw) or model.trained_hw
    n_files = len(condition_files(args.cond)) if args.cond else 1
    lay = plan(model, args, tuple(size), num=args.num, completing=True, n_inputs=n_files)  # before reading at size
    image, mask = read_pair(args.data, args.mask, size, exact=args.size is not None,  # (C, H, W), (H, W) bool
                            channels=model.first_stage.config.ddconfig.in_channels)
    if not mask.any():
        raise VQForgeError(f"{args.mask}: the mask is empty (nothing to complete)")
    if tuple(image.shape[1:]) != lay.image_hw:
        lay = plan(model, args, tuple(image.shape[1:]), num=args.num, completing=True, n_inputs=n_files)
    H, W = lay.image_hw
    inputs, sources = condition_inputs(model.condition, lay.image_hw, args.classes, args.cond)
    check_label_sets(model, args, inputs, sources)
    check_trained_size(model, args, lay)

    generator = torch.Generator(device=device).manual_seed(args.seed)
    t0 = time.perf_counter()
    n_masked = int(token_mask(mask, model.first_stage.downsample_factor).sum())
    bar = tqdm(total=args.num * n_masked, desc="complete", unit="tok", unit_scale=True, disable=args.quiet)
    lay, batch_size = fit_batch(model, args, lay, args.num, n_files, completing=True)
    batches = draw_batches(model, lay, inputs, args.num, batch_size, settings, generator, image=image, mask=mask,
                           decoding=decoding, callback=lambda _done, _total, z: bar.update(z.shape[0]),
                           feather=None if args.paste_back else -1)
    with atomic_dir(out_dir, OUTPUT_KIND, is_sample_folder) as tmp:  # complete, or absent if interrupted
        outs, per_sample = write_samples(model, batches, tmp, inputs, sources, args.model)
        bar.close()
        save_tensor_image(tmp / "mask.png", mask[None].float() * 2 - 1)
        masked_input = torch.where(mask[None], torch.zeros_like(image), image)
        save_grid(tmp / GRID_NAME, torch.cat((masked_input[None], outs)))
        write_json(tmp / SETTINGS_NAME, {
            "command": "complete", "vqforge_version": __version__, "model": str(args.model), "mode": model.mode,
            "input": str(args.data), "mask": str(args.mask), "num": args.num, "batch_size": batch_size,
            "size": [H, W], "token_grid": list(lay.grid_hw), "window": list(lay.window_hw),
            "cond_encoding": lay.cond_encoding, "decode_tile": list(lay.decode_tile) if lay.decode_tile else None,
            "masked_tokens": n_masked, "paste_back": args.paste_back, "cond": args.cond,
            "classes": classes_used(per_sample),
            "top_k": settings.top_k, "top_p": settings.top_p, "temperature": settings.temperature,
            "cfg": settings.cfg_scale, "greedy": settings.greedy, "seed": args.seed, "device": str(device),
            "decode_path": decode_path(device, decoding), "seconds": round(time.perf_counter() - t0, 3),
            "samples": per_sample,
        })
    print(f"wrote {args.num} completion(s) of {H}x{W} px ({n_masked} of {lay.n_tokens} tokens resampled) to {out_dir}")
    return 0
