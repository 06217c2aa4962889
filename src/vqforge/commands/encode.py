"""`vqforge encode`: pre-tokenize a dataset once with a VQGAN (and a condition stage) for transformer training.

Writes a token dataset (``meta.json`` + memory-mapped ``.npy`` arrays; format in :mod:`vqforge.data.tokens`).
Images are resized (smallest side to ``--size``, bicubic) and center-cropped; label maps use the same
geometry with nearest-neighbour resizing.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "encode", help="pre-tokenize a dataset with a VQGAN (for `vqforge train transformer`)",
        description="Encode every image of DATA into first-stage tokens (plus class labels and condition tokens) "
                    "and write a token dataset to TOKENS_DIR.")
    p.add_argument("--model", required=True, metavar="VQGAN_DIR",
                   help="first-stage VQGAN (model/run dir), or a transformer model dir (its stages are used)")
    p.add_argument("--data", required=True, help="image folder/list/glob, or fashion-mnist[:train|test]")
    p.add_argument("--out", required=True, metavar="TOKENS_DIR")
    p.add_argument("--cond-stage", metavar="DIR", help="condition VQGAN for spatial conditions")
    p.add_argument("--cond", choices=["segmentation", "depth", "edges", "lowres"],
                   help="condition to encode with --cond-stage (default: from its input channels)")
    p.add_argument("--cond-data", metavar="DIR", help="folder of paired maps (segmentation/depth), same relative "
                                                      "paths as the images with a .png suffix")
    p.add_argument("--n-labels", type=int, help="segmentation label count (default: cond stage input channels)")
    p.add_argument("--lowres-factor", type=int, default=4)
    p.add_argument("--labels", help="'folders' (ImageFolder sub-folder names) or a file of 'relative/path label' lines")
    p.add_argument("--size", type=int, help="image side after resize + center crop (default 256; Fashion-MNIST: 28, "
                                          "smaller = area downscale, larger = padding)")
    p.add_argument("--crops", type=int, default=1,
                   help="random crops per image (default 1 = one centre crop). Several crops of larger images teach "
                        "the transformer windows away from the centre, which sliding-window sampling needs")
    p.add_argument("--resize-max", type=int, default=0,
                   help="with --crops > 1: resize the smallest side to a size drawn from [--size, RESIZE_MAX] "
                        "before each crop (crops at several scales; default: --size)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random crops (default 0)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, help="encode only the first N images")
    p.add_argument("--workers", type=int, default=0, help="processes decoding images in parallel")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _read_label_file(path: Path, files: list[Path], root: Path) -> tuple[list[int], list[str]]:
    from ..io import VQForgeError

    table: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise VQForgeError(f"{path}:{n}: expected 'relative/path label'")
        table[parts[0]] = parts[1]
    names = sorted(set(table.values()), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    index = {n: i for i, n in enumerate(names)}
    labels = []
    for f in files:
        rel = f.relative_to(root).as_posix() if root.is_dir() else f.name
        if rel not in table:
            raise VQForgeError(f"{path}: no label for {rel}")
        labels.append(index[table[rel]])
    return labels, names


def encode_dataset(first_stage, images, out, *, labels=None, label_names=None, cond_stage=None, cond_mode=None,
                   cond_inputs=None, source_model="", cond_source="", batch_size=32, device="cpu", progress=True,
                   files=None, n_labels=0, lowres_factor=4, workers=0):
    """Encode an indexable of images (each (C, H, W) in [-1, 1]) and write a token dataset to ``out``.

    ``cond_inputs``: an indexable of raw conditions per image (label maps (H, W) / depth (1, H, W)) for
    segmentation/depth; edges and lowres are computed from the images. ``workers``: DataLoader processes
    that decode and resize images in parallel. Returns the output path.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from ..data.tokens import write_tokens
    from ..models.conditioning import ConditionConfig, build_condition

    first_stage = first_stage.to(device).eval()
    ccfg = ConditionConfig(mode=cond_mode, n_labels=n_labels, lowres_factor=lowres_factor) if cond_mode else None
    toks, ctoks = [], []
    grid = cgrid = None
    loader = torch.utils.data.DataLoader(_Pairs(images, cond_inputs), batch_size=batch_size, shuffle=False,
                                         num_workers=workers)
    with torch.no_grad():
        for x, raw in tqdm(loader, disable=not progress, desc="encode", unit="batch"):
            x = x.to(device)
            idx = first_stage.encode_to_indices(x)  # (B, h, w)
            grid = tuple(idx.shape[1:])
            toks.append(idx.flatten(1).cpu().numpy())
            if cond_stage is not None:
                raw = raw.to(device) if cond_inputs is not None else None
                c = build_condition(ccfg, x, raw)
                cidx = cond_stage.to(device).eval().encode_to_indices(c)
                cgrid = tuple(cidx.shape[1:])
                ctoks.append(cidx.flatten(1).cpu().numpy())
    image_size = tuple(images[0].shape[-2:])
    cond = None
    if cond_stage is not None:
        cond = {"mode": cond_mode, "grid": list(cgrid), "n_codes": int(cond_stage.n_codes), "source_model": str(cond_source)}
    return write_tokens(out, np.concatenate(toks), grid, first_stage.n_codes, image_size, str(source_model),
                        labels=None if labels is None else np.asarray(labels), label_names=label_names,
                        cond_tokens=np.concatenate(ctoks) if ctoks else None, cond=cond, files=files)


class _Pairs:
    """(image, raw condition or 0) items for the encoding DataLoader."""

    def __init__(self, images, conds=None):
        self.images, self.conds = images, conds

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        import torch

        return self.images[i], (torch.as_tensor(self.conds[i]) if self.conds is not None else 0)


class _Images:
    """Resize + crop images (and paired maps) lazily by index: one centre crop per file, or ``crops`` random
    crops per file (item ``i`` is crop ``i % crops`` of file ``i // crops``; its geometry is drawn from a
    generator seeded by ``(seed, i)``, so an image and its paired map get the same crop)."""

    def __init__(self, files, size, channels, maps=None, map_kind=None, crops=1, resize_max=0, seed=0):
        self.files, self.size, self.channels, self.maps, self.map_kind = files, size, channels, maps, map_kind
        self.crops, self.resize_max, self.seed = max(1, crops), resize_max, seed

    def __len__(self):
        return len(self.files) * self.crops

    def _geometry(self, img, resample, i):
        import random

        w, h = img.size
        rng = random.Random(self.seed * 1_000_003 + i)
        short = self.size
        if self.crops > 1 and self.resize_max > self.size:
            short = rng.randint(self.size, self.resize_max)
        s = short / min(w, h)
        img = img.resize((max(short, round(w * s)), max(short, round(h * s))), resample)
        w, h = img.size
        if self.crops > 1:
            left, top = rng.randint(0, w - self.size), rng.randint(0, h - self.size)
        else:
            left, top = (w - self.size) // 2, (h - self.size) // 2
        return img.crop((left, top, left + self.size, top + self.size))

    def __getitem__(self, i):
        from PIL import Image

        from ..data.images import load_rgb, to_tensor

        img = self._geometry(load_rgb(self.files[i // self.crops]), Image.BICUBIC, i)
        x = to_tensor(img)
        return x.mean(0, keepdim=True) if self.channels == 1 else x  # (C, H, W)

    def cond(self):
        return _Maps(self)


class _Maps:
    def __init__(self, imgs: _Images):
        self.imgs = imgs

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        import numpy as np
        import torch
        from PIL import Image

        from ..imageio import read_image
        from ..io import VQForgeError

        path = self.imgs.maps[i // self.imgs.crops]
        if not path.is_file():
            raise VQForgeError(f"{path}: paired {self.imgs.map_kind} map not found")
        m = read_image(path, mode=None)
        if self.imgs.map_kind == "segmentation":
            arr = np.array(self.imgs._geometry(m.convert("L"), Image.NEAREST, i), dtype=np.int64)
            return torch.from_numpy(arr)  # (H, W)
        if m.mode == "RGBA":  # D-RIN layout: 4 bytes per pixel = one float32
            arr = np.array(m).view(np.float32)[..., 0]
        else:
            arr = np.array(m, dtype=np.float32)
        d = Image.fromarray(arr.astype(np.float32), mode="F")
        return torch.from_numpy(np.array(self.imgs._geometry(d, Image.BILINEAR, i), dtype=np.float32))[None]


def run(args: argparse.Namespace) -> int:
    from ..api import load
    from ..io import VQForgeError
    from ..models.transformer import Net2NetTransformer
    from ..models.vqgan import VQGAN
    from ..train.common import _pick_device

    device = _pick_device(args.device, 0)
    model = load(args.model)
    cond_stage, cond_mode, cond_source = None, args.cond, args.cond_stage or ""
    n_labels = args.n_labels or 0
    if isinstance(model, Net2NetTransformer):
        if model.mode in ("segmentation", "depth", "edges", "lowres") and args.cond_stage is None:
            cond_stage, cond_mode, cond_source = model.cond_stage, model.mode, args.model
            n_labels = n_labels or model.config.cond.n_labels
            args.lowres_factor = model.config.cond.lowres_factor
        model = model.first_stage
    if not isinstance(model, VQGAN):
        raise VQForgeError(f"{args.model}: not a VQGAN or transformer model")
    if args.cond_stage:
        cond_stage = load(args.cond_stage)
        if not isinstance(cond_stage, VQGAN):
            raise VQForgeError(f"{args.cond_stage}: not a VQGAN model")
        in_ch = cond_stage.config.ddconfig.in_channels
        cond_mode = cond_mode or {1: "depth", 3: "lowres"}.get(in_ch, "segmentation")
        if cond_mode == "segmentation":
            n_labels = n_labels or in_ch
    channels = model.config.ddconfig.in_channels
    labels = label_names = files_out = cond_inputs = None
    spec = args.data
    if spec.split(":", 1)[0] == "fashion-mnist":
        from ..data.fashion_mnist import CLASS_NAMES, load_fashion_mnist, to_model_images

        split = spec.split(":", 1)[1] if ":" in spec else "train"
        imgs, lab = load_fashion_mnist(split)
        if args.limit:
            imgs, lab = imgs[:args.limit], lab[:args.limit]
        images = to_model_images(imgs, args.size or 28, channels)
        labels, label_names = lab, list(CLASS_NAMES)
    else:
        from ..data.images import find_images

        root = Path(spec)
        files = find_images(spec)[:args.limit] if args.limit else find_images(spec)
        maps = None
        if cond_mode in ("segmentation", "depth"):
            if not args.cond_data:
                raise VQForgeError(f"--cond {cond_mode} needs --cond-data DIR with the paired maps")
            base = root if root.is_dir() else files[0].parent
            maps = [Path(args.cond_data) / f.relative_to(base).with_suffix(".png") for f in files]
        if args.crops < 1:
            raise VQForgeError(f"--crops must be >= 1, got {args.crops}")
        images = _Images(files, args.size or 256, channels, maps, cond_mode, args.crops, args.resize_max, args.seed)
        if maps is not None:
            cond_inputs = images.cond()
        files_out = [str(f) for f in files for _ in range(args.crops)]
        if args.labels == "folders":
            if not root.is_dir():
                raise VQForgeError(f"{spec}: --labels folders needs an image folder (ImageFolder layout)")
            names = sorted({f.parent.relative_to(root).as_posix() for f in files})
            index = {n: i for i, n in enumerate(names)}
            labels = [index[f.parent.relative_to(root).as_posix()] for f in files]
            label_names = names
        elif args.labels:
            labels, label_names = _read_label_file(Path(args.labels), files, root)
        if labels is not None and args.crops > 1:
            labels = [lab for lab in labels for _ in range(args.crops)]
    out = encode_dataset(model, images, args.out, labels=labels, label_names=label_names, cond_stage=cond_stage,
                         cond_mode=cond_mode, cond_inputs=cond_inputs, source_model=args.model,
                         cond_source=cond_source, batch_size=args.batch_size, device=device,
                         progress=not args.no_progress, files=files_out, n_labels=n_labels,
                         lowres_factor=args.lowres_factor, workers=args.workers)
    print(f"wrote {len(images)} token rows to {out}")
    return 0
