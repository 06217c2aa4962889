"""`vqforge sample`: draw images from a transformer model, at its trained size or larger (sliding window)."""

from __future__ import annotations

import argparse


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """Options shared by `sample` and `complete`."""
    p.add_argument("--model", required=True, help="transformer model directory, run directory or checkpoint (.pt)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--class", dest="classes", type=int, nargs="+", default=None, metavar="C",
                   help="class label(s) for class-conditional models; samples cycle through them "
                        "(default: cycle through all classes)")
    p.add_argument("--cond", default=None, metavar="MAP_OR_DIR",
                   help="condition file or folder for spatial models (segmentation: label-id PNG; depth: float32 "
                        "RGBA PNG, .npy or grayscale PNG; edges: a photo, its edges are detected; lowres: the "
                        "low-resolution image); samples cycle through the files")
    p.add_argument("--size", default=None, metavar="HxW",
                   help="output size in pixels, a multiple of the downsampling factor (default: the trained size, "
                        "or the condition's size); larger than trained uses the sliding window")
    p.add_argument("--window", default=None, metavar="HxW",
                   help="sliding window in tokens (default: the trained grid, resolution / downsampling factor)")
    p.add_argument("--top-k", type=int, default=100, help="keep the k most likely tokens (0 = off; default 100)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (default: off)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default 1.0)")
    p.add_argument("--cfg", type=float, default=0.0, metavar="S",
                   help="classifier-free guidance scale for class models with a NULL class (default 0 = off)")
    p.add_argument("--greedy", action="store_true", help="take the most likely token instead of sampling")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=int, default=4, help="samples per batch (default 4)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="arithmetic of the transformer: auto (default) = bf16 where the device runs it natively (CUDA; "
                        "CPUs with AVX512-BF16/AMX: prepacked bf16 weights), else fp32; fp32 = the exact path")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile the decode step (auto = on CUDA only, with CUDA graphs)")
    p.add_argument("--no-compile", action="store_true", help=argparse.SUPPRESS)  # old spelling of --precision fp32
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="sample images from a transformer model (any size, sliding window)",
                       description="Sample images with a trained transformer. Writes one PNG per sample, grid.png and "
                                   "settings.json into --output.")
    add_sampling_args(p)
    p.add_argument("--num", type=int, default=None,
                   help="number of samples (default: 8, or one per condition file)")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------------------------- helpers
def parse_hw(text: str | None, what: str):
    """'HxW' or 'S' -> (H, W); None stays None."""
    from ..io import VQForgeError

    if text is None:
        return None
    parts = text.lower().replace("*", "x").split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        hw = ()
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or min(hw) <= 0:
        raise VQForgeError(f"{what} {text!r}: expected HxW (e.g. 256x512) or one positive number")
    return hw


def load_transformer(path: str, device):
    from ..api import load
    from ..io import VQForgeError
    from ..models.transformer import Net2NetTransformer

    model = load(path)
    if not isinstance(model, Net2NetTransformer):
        raise VQForgeError(f"{path}: sampling needs a transformer model, this is a {type(model).__name__}")
    return model.to(device).eval()


def decode_options_from_args(args):
    """--precision / --compile (and the old --no-compile, with a notice) -> DecodeOptions."""
    import sys

    from ..io import VQForgeError
    from ..sampling.generate import DecodeOptions

    precision, compile_ = args.precision, {"auto": None, "on": True, "off": False}[args.compile]
    if args.no_compile:
        print("notice: --no-compile is now --precision fp32 --compile off (the exact path)", file=sys.stderr)
        precision, compile_ = "fp32", False
    try:
        return DecodeOptions(precision, compile_)
    except ValueError as e:
        raise VQForgeError(f"--precision: {e}") from None


def settings_from_args(args):
    from ..io import VQForgeError
    from ..sampling.processors import SamplingSettings

    try:
        return SamplingSettings(temperature=args.temperature, top_k=args.top_k or None, top_p=args.top_p,
                                cfg_scale=args.cfg, greedy=args.greedy)
    except ValueError as e:
        raise VQForgeError(f"sampling settings: {e}") from None


def check_classes(model, classes, source: str) -> None:
    from ..io import VQForgeError

    n = model.config.cond.n_classes
    bad = [c for c in classes if not 0 <= c < n]
    if bad:
        raise VQForgeError(f"{source}: unknown class {bad[0]} (this model has classes 0..{n - 1})")


def load_condition(model, path, size_hw):
    """Model input condition (1, ...) for a spatial model from one file, and the image size it implies."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ..imageio import load_image_tensor, read_image
    from ..io import VQForgeError

    mode = model.mode
    if mode == "segmentation":
        from PIL import Image

        im = read_image(path, mode=None)
        if im.mode not in ("L", "P", "I"):
            raise VQForgeError(f"{path}: a segmentation map is a one-channel PNG of label ids, got mode {im.mode}")
        if size_hw is not None:
            im = im.resize((size_hw[1], size_hw[0]), Image.NEAREST)
        labels = torch.from_numpy(np.asarray(im).astype(np.int64))[None]  # (1, H, W)
        n = model.config.cond.n_labels
        if labels.max() >= n or labels.min() < 0:
            raise VQForgeError(f"{path}: label ids must lie in [0, {n}), found {int(labels.max())}")
        return model.build_condition(raw=labels), tuple(labels.shape[1:])
    if mode == "depth":
        if str(path).endswith(".npy"):
            try:
                depth = torch.from_numpy(np.load(path).astype(np.float32))
            except (OSError, ValueError) as e:
                raise VQForgeError(f"{path}: not a readable .npy depth map ({e})") from None
        else:
            im = read_image(path, mode=None)
            arr = np.asarray(im)
            depth = (torch.from_numpy(arr.copy().view(np.float32)[..., 0]) if im.mode == "RGBA"
                     else torch.from_numpy(arr.astype(np.float32)))  # RGBA: float32 packed in 4 bytes
        if depth.dim() != 2:
            raise VQForgeError(f"{path}: a depth map has one channel, got shape {tuple(depth.shape)}")
        depth = depth[None, None]  # (1, 1, H, W)
        if size_hw is not None:
            depth = F.interpolate(depth, size=size_hw, mode="bilinear", align_corners=False)
        return model.build_condition(raw=depth), tuple(depth.shape[2:])
    if mode == "edges":
        x = load_image_tensor(path, size=size_hw)[None]
        return model.build_condition(images=x), tuple(x.shape[2:])
    if mode == "lowres":
        r = model.config.cond.lowres_factor
        small = None if size_hw is None else (size_hw[0] // r, size_hw[1] // r)
        x = load_image_tensor(path, size=small)[None]  # the low-resolution image is the model input
        return x, (x.shape[2] * r, x.shape[3] * r)
    raise VQForgeError(f"{path}: --cond is for spatial models; this model's condition is {mode!r}")


def conditions(model, args, n: int, size_hw, device):
    """Per-sample model input conditions for the CLI: a list of n tensors (1, ...) or labels, and the size."""
    import torch

    from ..imageio import list_images
    from ..io import VQForgeError

    mode = model.mode
    if mode == "class":
        if args.cond:
            raise VQForgeError(f"{args.cond}: --cond is for spatial models; give class labels with --class")
        classes = args.classes or list(range(model.config.cond.n_classes))
        check_classes(model, classes, args.model)
        return [torch.tensor([classes[i % len(classes)]]) for i in range(n)], size_hw
    if args.classes:
        raise VQForgeError(f"{args.model}: --class is for class-conditional models; this model's condition is {mode!r}")
    if mode in ("unconditional", "coord"):
        if args.cond:
            raise VQForgeError(f"{args.cond}: this model's condition is {mode!r}; it takes no --cond")
        return [None] * n, size_hw
    if mode == "tokens":
        raise VQForgeError(f"{args.model}: models conditioned on raw token ids cannot be sampled from the CLI")
    if not args.cond:
        raise VQForgeError(f"{args.model}: this model is conditioned on {mode} maps; give them with --cond FILE_OR_DIR")
    files = list_images(args.cond) if not str(args.cond).endswith(".npy") else [__import__("pathlib").Path(args.cond)]
    if not files:
        raise VQForgeError(f"{args.cond}: no condition files found")
    loaded = [load_condition(model, p, size_hw) for p in files]
    sizes = {hw for _, hw in loaded}
    if len(sizes) > 1:
        raise VQForgeError(f"{args.cond}: condition files differ in size {sorted(sizes)}; give --size HxW")
    return [loaded[i % len(loaded)][0] for i in range(n)], sizes.pop()


def batch_condition(model, lay, conds, cfg_scale, device):
    """Stack per-sample conditions into (cond, uncond) token tensors for one batch."""
    import torch

    from ..sampling.pipeline import condition_tokens

    B = len(conds)
    if model.mode == "class":
        return condition_tokens(model, lay, B, classes=torch.cat(conds), cfg_scale=cfg_scale)
    if conds[0] is None:
        return condition_tokens(model, lay, B, cfg_scale=cfg_scale)
    return condition_tokens(model, lay, B, cond=torch.cat(conds).to(device), cfg_scale=cfg_scale)


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from .. import __version__
    from ..imageio import GRID_NAME, save_grid, save_tensor_image
    from ..io import VQForgeError, write_json
    from ..sampling.generate import decode_path
    from ..sampling.pipeline import layout, sample_images

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    settings = settings_from_args(args)
    decoding = decode_options_from_args(args)
    decode_mode = decode_path(device, decoding)  # an unsupported --precision fails here, before any work
    if args.batch_size < 1 or (args.num is not None and args.num < 1):
        raise VQForgeError("--num and --batch-size must be >= 1")
    model = load_transformer(args.model, device)
    size = parse_hw(args.size, "--size")
    window = parse_hw(args.window, "--window")
    n = args.num
    if n is None:
        n = 8
        if args.cond and model.config.cond.is_spatial:
            from ..imageio import list_images

            n = len(list_images(args.cond)) if not str(args.cond).endswith(".npy") else 1
    conds, size = conditions(model, args, n, size, device)
    try:
        lay = layout(model, size, window)
        if args.cfg > 0 and model.mode == "class" and model.null_class_token is None:
            raise ValueError("classifier-free guidance (--cfg) needs a model trained with a NULL class")
    except ValueError as e:
        raise VQForgeError(f"{args.model}: {e}") from None

    out_dir = Path(args.output)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    images, per_sample = [], []
    t0 = time.perf_counter()
    bar = tqdm(total=n * lay.n_tokens, desc="sample", unit="tok", unit_scale=True)
    for start in range(0, n, args.batch_size):
        batch = conds[start:start + args.batch_size]
        try:
            cond, uncond = batch_condition(model, lay, batch, args.cfg, device)
            x, _ = sample_images(model, lay, cond, settings, generator, uncond, decoding,
                                 callback=lambda *_: bar.update(len(batch)))
        except ValueError as e:
            raise VQForgeError(f"{args.model}: {e}") from None
        for k, img in enumerate(x):
            i = start + k
            save_tensor_image(out_dir / f"{i:05d}.png", img)
            entry = {"file": f"{i:05d}.png"}
            if model.mode == "class":
                entry["class"] = int(batch[k].item())
            per_sample.append(entry)
        images.append(x.cpu())
    bar.close()
    seconds = time.perf_counter() - t0
    save_grid(out_dir / GRID_NAME, torch.cat(images))
    write_json(out_dir / "settings.json", {
        "command": "sample", "vqforge_version": __version__, "model": str(args.model), "mode": model.mode,
        "num": n, "batch_size": args.batch_size, "size": list(lay.image_hw), "token_grid": list(lay.grid_hw),
        "window": list(lay.window_hw), "sliding_window": lay.sliding, "cond": args.cond, "classes": args.classes,
        "top_k": settings.top_k, "top_p": settings.top_p, "temperature": settings.temperature,
        "cfg": settings.cfg_scale, "greedy": settings.greedy, "seed": args.seed, "device": str(device),
        "decode_path": decode_mode, "seconds": round(seconds, 3),
        "tokens_per_second": round(n * lay.n_tokens / seconds, 1), "samples": per_sample,
    })
    print(f"wrote {n} sample(s) of {lay.image_hw[0]}x{lay.image_hw[1]} px to {out_dir} "
          f"({n * lay.n_tokens / seconds:.0f} tokens/s)")
    return 0
