"""`vqforge complete`: resample the masked part of an image with a transformer model."""

from __future__ import annotations

import argparse

from .sample import add_sampling_args


def add_parser(sub) -> None:
    p = sub.add_parser("complete", help="complete the masked part of an image with a transformer model",
                       description="Encode the image to tokens, resample the tokens under the mask (a token is "
                                   "resampled when any pixel of its patch is masked) in raster order, keep the others, "
                                   "decode. Writes one PNG per completion, mask.png, grid.png (input first) and settings.json.")
    p.add_argument("--input", required=True, help="the image to complete")
    p.add_argument("--mask", required=True, help="mask image of the same size: nonzero (white) pixels are resampled")
    p.add_argument("--num", type=int, default=1, help="completions to draw (default 1)")
    add_sampling_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import numpy as np
    import torch
    from tqdm import tqdm

    from .. import __version__
    from ..imageio import GRID_NAME, load_image_tensor, read_image, save_grid, save_tensor_image
    from ..io import VQForgeError, write_json
    from ..sampling.generate import decode_path
    from ..sampling.pipeline import complete_image, layout
    from .sample import (batch_condition, conditions, decode_options_from_args, load_transformer, parse_hw,
                         settings_from_args)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    settings = settings_from_args(args)
    decoding = decode_options_from_args(args)
    decode_mode = decode_path(device, decoding)  # an unsupported --precision fails here, before any work
    if args.num < 1 or args.batch_size < 1:
        raise VQForgeError("--num and --batch-size must be >= 1")
    model = load_transformer(args.model, device)
    f = model.first_stage.downsample_factor
    size = parse_hw(args.size, "--size")
    image = load_image_tensor(args.input, size=size)  # (3, H, W)
    H, W = image.shape[1:]
    if H % f or W % f:
        raise VQForgeError(f"{args.input}: size {H}x{W} is not a multiple of the model's downsampling factor {f}; "
                           f"give --size HxW")
    from PIL import Image

    m = read_image(args.mask, mode="L")
    if m.size != (W, H):
        if size is None:
            raise VQForgeError(f"{args.mask}: mask is {m.size[1]}x{m.size[0]} px, the image {H}x{W} px")
        m = m.resize((W, H), Image.NEAREST)
    mask = torch.from_numpy(np.asarray(m) > 127)  # (H, W) True = resample
    if not mask.any():
        raise VQForgeError(f"{args.mask}: the mask is empty (nothing to complete)")
    conds, _ = conditions(model, args, args.num, (H, W), device)
    try:
        lay = layout(model, (H, W), parse_hw(args.window, "--window"))
    except ValueError as e:
        raise VQForgeError(f"{args.model}: {e}") from None

    out_dir = Path(args.output)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    outs = []
    t0 = time.perf_counter()
    from ..sampling.complete import token_mask

    n_masked = int(token_mask(mask, f).sum())
    bar = tqdm(total=args.num * n_masked, desc="complete", unit="tok", unit_scale=True)
    for start in range(0, args.num, args.batch_size):
        batch = conds[start:start + args.batch_size]
        x = image[None].expand(len(batch), -1, -1, -1).to(device)
        try:
            cond, uncond = batch_condition(model, lay, batch, args.cfg, device)
            out, _, _ = complete_image(model, x, mask.to(device), cond, lay, settings, generator, uncond,
                                       decoding, callback=lambda *_: bar.update(len(batch)))
        except ValueError as e:
            raise VQForgeError(f"{args.model}: {e}") from None
        for k, img in enumerate(out):
            save_tensor_image(out_dir / f"{start + k:05d}.png", img)
        outs.append(out.cpu())
    bar.close()
    save_tensor_image(out_dir / "mask.png", mask[None].float() * 2 - 1)
    masked_input = torch.where(mask[None], torch.zeros_like(image), image)
    save_grid(out_dir / GRID_NAME, torch.cat([masked_input[None]] + outs))
    write_json(out_dir / "settings.json", {
        "command": "complete", "vqforge_version": __version__, "model": str(args.model), "mode": model.mode,
        "input": str(args.input), "mask": str(args.mask), "num": args.num, "batch_size": args.batch_size,
        "size": [H, W], "token_grid": list(lay.grid_hw), "window": list(lay.window_hw),
        "masked_tokens": n_masked, "cond": args.cond, "classes": args.classes, "top_k": settings.top_k,
        "top_p": settings.top_p, "temperature": settings.temperature, "cfg": settings.cfg_scale,
        "greedy": settings.greedy, "seed": args.seed, "device": str(device),
        "decode_path": decode_mode, "seconds": round(time.perf_counter() - t0, 3),
    })
    print(f"wrote {args.num} completion(s) of {H}x{W} px ({n_masked} of {lay.n_tokens} tokens resampled) to {out_dir}")
    return 0
