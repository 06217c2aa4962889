"""Benchmark: codebook usage, perplexity and reconstruction PSNR of each quantizer kind.

Trains the same tiny VQGAN (same data, seed, steps and codebook size) once per quantizer on random crops of
real photos and measures, on a fixed held-out set of crops: the fraction of codes used, the perplexity of the
code distribution and the PSNR of the reconstructions. Results go to the ``## Quantizers`` section of
``docs/benchmarks.md`` (the section is replaced, the rest of the file kept) and to a JSON file.

The loop is deliberately minimal (L1 reconstruction + quantizer loss, Adam; no GAN, no perceptual loss), which
is enough to compare quantizers with each other.

    PYTHONPATH=src python bench/quantizers.py --steps 400          # about 15 minutes on 2 CPU cores
    PYTHONPATH=src python bench/quantizers.py --steps 20 --dry-run # smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import platform
import random
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vqforge.config import to_dict
from vqforge.io import write_text
from vqforge.models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
from vqforge.quantizers import CodebookUsage, EMAVQConfig, FSQConfig, L2VQConfig, QuantizerConfig, VQConfig

ROOT = Path(__file__).resolve().parents[1]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def quantizer_suite(n_codes: int, embed_dim: int, restart_after: int,
                    fsq_levels: tuple[int, ...] | None = None) -> dict[str, QuantizerConfig]:
    """The quantizers compared, all with ``n_codes`` codes and ``embed_dim`` latent channels."""
    size = dict(n_embed=n_codes, embed_dim=embed_dim)
    levels = fsq_levels or {1024: (8, 8, 4, 4), 256: (8, 6, 5)}.get(n_codes)
    suite: dict[str, QuantizerConfig] = {
        "vq (original, legacy)": VQConfig(**size, legacy=True),
        "l2 (dim 8) + restart": L2VQConfig(**size, codebook_dim=8, restart_after=restart_after)}
    if levels:
        fsq = FSQConfig(n_embed=math.prod(levels), embed_dim=embed_dim, levels=levels)
        suite[f"fsq {list(levels)}"] = fsq
        suite[f"fsq {list(levels)} + data init"] = replace(fsq, data_init=True)
        for w in (0.02, 0.1):
            suite[f"fsq {list(levels)} + entropy {w}"] = replace(fsq, entropy_weight=w, entropy_temperature=1.0)
    suite.update({
        "l2 (dim 8)": L2VQConfig(**size, codebook_dim=8),
        "ema": EMAVQConfig(**size),
        "ema + restart": EMAVQConfig(**size, restart_after=restart_after),
        "vq + k-means + restart": VQConfig(**size, kmeans_init=True, restart_after=restart_after),
    })
    return suite


def find_photos(data: Path) -> list[Path]:
    photos = sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                    and "segmentation" not in str(p) and "depth" not in str(p))
    if not photos:
        sys.exit(f"bench/quantizers.py: error: {data}: no photos found")
    return photos


def load_photo(path: Path, short_side: int) -> torch.Tensor:
    """Photo downscaled to ``short_side`` pixels on its short side, (3, H, W) in [-1, 1]."""
    img = Image.open(path).convert("RGB")
    s = short_side / min(img.size)
    img = img.resize((max(short_side, round(img.width * s)), max(short_side, round(img.height * s))),
                     Image.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 127.5 - 1.0


def random_crops(photos: list[torch.Tensor], n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 3, size, size) random crops with random horizontal flips."""
    out = []
    for _ in range(n):
        p = photos[int(torch.randint(len(photos), (1,), generator=gen))]
        y = int(torch.randint(p.shape[1] - size + 1, (1,), generator=gen))
        x = int(torch.randint(p.shape[2] - size + 1, (1,), generator=gen))
        c = p[:, y:y + size, x:x + size]
        out.append(c.flip(2) if torch.rand((), generator=gen) < 0.5 else c)
    return torch.stack(out)


def grid_crops(photos: list[torch.Tensor], size: int, per_photo: int) -> torch.Tensor:
    """Fixed, evenly spread crops: ``per_photo`` from each photo (validation set)."""
    out = []
    side = int(np.ceil(np.sqrt(per_photo)))
    for p in photos:
        ys = np.linspace(0, p.shape[1] - size, side).round().astype(int)
        xs = np.linspace(0, p.shape[2] - size, side).round().astype(int)
        cells = [(y, x) for y in ys for x in xs][:per_photo]
        out += [p[:, y:y + size, x:x + size] for y, x in cells]
    return torch.stack(out)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [-1, 1]."""
    mse = ((x.clamp(-1, 1) - y) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def train_one(name: str, qcfg: QuantizerConfig, dd: AutoencoderConfig, train_photos, val: torch.Tensor,
              args) -> dict:
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    model = VQGAN(VQGANConfig(dd, qcfg)).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr, betas=(0.5, 0.9))
    gen = torch.Generator().manual_seed(args.seed)  # same crops in the same order for every quantizer
    window = CodebookUsage(model.n_codes, window=args.window)
    t0 = time.time()
    for step in range(1, args.steps + 1):
        x = random_crops(train_photos, args.batch, args.crop, gen)
        out = model(x)
        rec = F.l1_loss(out.reconstruction, x)
        loss = rec + out.quantizer.losses["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.update(out.quantizer.indices)
        if step % args.log_every == 0 or step == args.steps:
            print(f"  [{name}] step {step}/{args.steps} l1 {rec.item():.4f} "
                  f"qloss {out.quantizer.losses['loss'].item():.4f} window usage {window.usage():.3f} "
                  f"({time.time() - t0:.0f}s)", flush=True)
    train_s = time.time() - t0
    model.eval()
    val_usage = CodebookUsage(model.n_codes)
    psnrs = []
    with torch.no_grad():
        for i in range(0, len(val), 64):
            x = val[i:i + 64]
            q = model.encode(x)
            val_usage.update(q.indices)
            psnrs.append(psnr(model.decode(q.quantized), x))
    return {"name": name, "kind": qcfg.kind, "quantizer": to_dict(qcfg),
            "val_usage": val_usage.usage(), "val_codes_used": val_usage.codes_used(),
            "val_perplexity": val_usage.perplexity(), "val_psnr": float(torch.cat(psnrs).mean()),
            "train_window_usage": window.usage(), "train_seconds": train_s}


def render_section(results: list[dict], meta: dict) -> str:
    lines = [
        meta["heading"],
        "",
        f"Codebook usage and reconstruction of each quantizer kind (`bench/quantizers.py`), {meta['n_codes']} codes, "
        f"identical tiny VQGAN, data, seed and steps for every row.",
        "",
        f"- Device: {meta['device']}. Date: {meta['date']}. Wall time: {meta['wall_min']:.1f} min"
        f"{' (partial run: ' + meta['partial'] + ')' if meta.get('partial') else ''}.",
        f"- Command: `{meta['command']}`",
        f"- Training: {meta['steps']} steps, batch {meta['batch']}, {meta['crop']}px random crops (with flips) of "
        f"{meta['n_train']} real photos from the shared example data (S-FLCKR, COCO val, ImageNet val), downscaled "
        f"to {meta['photo_size']}px on the short side; own minimal loop (L1 + quantizer loss, Adam lr {meta['lr']}, "
        f"no GAN or perceptual loss) over `vqforge.models.vqgan.VQGAN`, not the full `vqforge.train.vqgan` trainer "
        f"(whose GAN and validation machinery is the same for every quantizer and would only add time).",
        f"- Model: ch {meta['ch']}, ch_mult {meta['ch_mult']} (f{meta['f']}, {meta['crop'] // meta['f']}x"
        f"{meta['crop'] // meta['f']} latents), 1 res block, embed_dim {meta['embed_dim']}.",
        f"- Validation: {meta['n_val']} fixed crops of {meta['n_val_photos']} held-out photos "
        f"({meta['n_val_latents']} latents). Usage = fraction of the codes hit at least once; perplexity = "
        f"exp(entropy) of the code histogram; PSNR on [0, 1] images, mean over crops. Train window usage: codes "
        f"hit in the last {meta['window']} training steps. Train s: wall seconds on a shared machine (its load varied "
        f"between rows).",
        "",
        "| quantizer | val usage | codes used | val perplexity | val PSNR (dB) | train window usage | train s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(f"| {r['name']} | {100 * r['val_usage']:.1f}% | {r['val_codes_used']} | "
                     f"{r['val_perplexity']:.1f} | {r['val_psnr']:.2f} | {100 * r['train_window_usage']:.1f}% | "
                     f"{r['train_seconds']:.0f} |")
    base = next((r for r in results if r["name"].startswith("vq (original")), None)
    targets = [r for r in results if r["name"] == "l2 (dim 8) + restart" or
               (r["kind"] == "fsq" and not r["quantizer"].get("data_init"))]
    if base and targets:
        lines += ["", f"Targets of issue 4 (val usage >= 90%, val PSNR >= the original's {base['val_psnr']:.2f} dB "
                  f"at equal steps; the original uses {100 * base['val_usage']:.1f}% of its codes):"]
        for r in targets:
            ok_u, ok_p = r["val_usage"] >= 0.9, r["val_psnr"] >= base["val_psnr"]
            lines.append(f"- {r['name']}: usage {100 * r['val_usage']:.1f}% ({'met' if ok_u else 'NOT met'}), "
                         f"PSNR {r['val_psnr']:.2f} dB ({'met' if ok_p else 'NOT met'}).")
    lines += ["", "FSQ entropy rows add the entropy penalty over all grid points (temperature 1 in level units). "
              f"Restart rows re-seed a code after {meta['restart_after']} training steps without use; l2 rows "
              "project the latents to 8 dimensions and look codes up by cosine similarity; the original is "
              "`kind: vq, legacy: true` (its configs' default).", ""]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the section of ``path`` whose heading is the first line of ``section``."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    heading = section.splitlines()[0].strip()
    start = next((i for i, l in enumerate(lines) if l.strip() == heading), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "\n".join(lines[:start] + section.rstrip("\n").splitlines() + [""] + lines[end:])
    write_text(path, new.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"), help="folder searched for photos")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=32)
    ap.add_argument("--photo-size", type=int, default=96, help="short side photos are downscaled to")
    ap.add_argument("--n-codes", type=int, default=1024)
    ap.add_argument("--embed-dim", type=int, default=32)
    ap.add_argument("--ch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--val-per-photo", type=int, default=16)
    ap.add_argument("--fsq-levels", type=lambda t: tuple(int(v) for v in t.split(",")),
                    help="FSQ levels, comma separated (default 8,8,4,4 for 1024 codes)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--restart-after", type=int, default=25, help="steps without use before a code is re-seeded")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--only", nargs="*", help="names (or parts of names) of the quantizers to run")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--json", type=Path, default=ROOT / "runs" / "bench_quantizers.json")
    ap.add_argument("--heading", default="## Quantizers", help="markdown heading of the section written")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows of --json from an earlier run (same settings) and add or replace these")
    ap.add_argument("--from-json", action="store_true",
                    help="train nothing: re-render the section from the results in --json")
    ap.add_argument("--dry-run", action="store_true", help="print the table, write nothing")
    args = ap.parse_args(argv)
    if args.from_json:
        data = json.loads(args.json.read_text())
        data["meta"].setdefault("heading", args.heading)
        write_section(args.out, render_section(data["results"], data["meta"]))
        print(f"rewrote {data['meta']['heading']!r} in {args.out} from {args.json}")
        return
    torch.set_num_threads(args.threads)
    t_start = time.time()

    photos = find_photos(args.data)
    val_paths = photos[::5]
    train_paths = [p for p in photos if p not in val_paths]
    train_photos = [load_photo(p, args.photo_size) for p in train_paths]
    val = grid_crops([load_photo(p, args.photo_size) for p in val_paths], args.crop, args.val_per_photo)
    ch_mult = (1, 1, 2)
    dd = AutoencoderConfig(ch=args.ch, ch_mult=ch_mult, num_res_blocks=1, attn_resolutions=(),
                           resolution=args.crop, z_channels=args.embed_dim)
    suite = quantizer_suite(args.n_codes, args.embed_dim, args.restart_after, args.fsq_levels)
    if args.only:
        # an entry selects the quantizer of that exact name, or else every name containing it
        keep = {k for s in args.only for k in suite if (k == s if s in suite else s in k)}
        suite = {k: v for k, v in suite.items() if k in keep}
    print(f"{len(train_photos)} train photos, {len(val)} validation crops, {len(suite)} quantizers", flush=True)

    results, previous = [], None
    if args.append and args.json.exists():
        previous = json.loads(args.json.read_text())
        results = [r for r in previous["results"] if r["name"] not in suite]
    n_total = len(results) + len(suite)
    for name, qcfg in suite.items():
        print(f"{name}:", flush=True)
        r = train_one(name, qcfg, dd, train_photos, val, args)
        print(f"  -> val usage {100 * r['val_usage']:.1f}%  perplexity {r['val_perplexity']:.1f}  "
              f"PSNR {r['val_psnr']:.2f} dB", flush=True)
        results.append(r)
        finish(results, args, dd, ch_mult, len(train_photos), len(val), len(val_paths), t_start, argv,
               final=len(results) == n_total, previous=previous)


def finish(results, args, dd, ch_mult, n_train, n_val, n_val_photos, t_start, argv, final: bool,
           previous: dict | None = None) -> None:
    """Write the section and JSON with the results so far (after every quantizer, so partial runs count)."""
    f = dd.downsample_factor
    threads = f"{args.threads} thread{'s' if args.threads > 1 else ''}"
    meta = {"device": f"CPU ({platform.processor() or platform.machine()}, {threads}, torch {torch.__version__})",
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "wall_min": (time.time() - t_start) / 60,
            "command": "PYTHONPATH=src python bench/quantizers.py " + shlex.join(argv if argv is not None
                                                                                else sys.argv[1:]),
            "steps": args.steps, "batch": args.batch, "crop": args.crop, "photo_size": args.photo_size,
            "n_train": n_train, "n_val": n_val, "n_val_photos": n_val_photos,
            "n_val_latents": n_val * (args.crop // f) ** 2, "lr": args.lr, "ch": args.ch,
            "ch_mult": list(ch_mult), "f": f, "embed_dim": args.embed_dim, "n_codes": args.n_codes,
            "window": args.window, "restart_after": args.restart_after, "heading": args.heading}
    if previous is not None:  # --append: rows of an earlier run of the same setup are kept
        meta["command"] = previous["meta"]["command"] + "` then `" + meta["command"]
        meta["wall_min"] += previous["meta"]["wall_min"]
    if not final:
        meta["partial"] = f"{len(results)} quantizers done so far"
    section = render_section(results, meta)
    if final:
        print(section)
    if not args.dry_run:
        write_section(args.out, section)
        from vqforge.io import write_json
        write_json(args.json, {"meta": meta, "results": results})
        print(f"wrote {args.out} and {args.json}")


if __name__ == "__main__":
    main()
