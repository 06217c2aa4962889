"""Does a first stage keep colour? Reconstruction PSNR and colour statistics on held-out photos, and the
codebook's colour coverage (issue 24: the bundled `landscapes` first stage turned sand and sea blue-grey).

For each held-out photo (default: the 18 bundled in src/vqforge/demo_assets/photos, which no landscape run
trains on), at its own size (cropped to a multiple of 8, as `vqforge reconstruct`) and as a 128 px centre crop
(the issue's protocol), it compares the reconstruction with the photo:

* PSNR (dB) and SSIM;
* per-channel mean error: |mean_c(rec) - mean_c(photo)| in 8-bit levels (0..255), averaged over the photos
  (and the signed bias per channel: + is too bright);
* saturation: the mean HSV saturation (0..1) of rec and photo, their absolute difference and ratio;
* chroma: the mean distance of each pixel's RGB from its grey (R=G=B) axis, rec / photo.

Codebook colour coverage: each code decoded as a uniform token grid (every position the same code) gives the
colour that code paints on its own; the script prints how saturated those colours are against the photos' own
8 x 8 patch colours, and which share of the photos' patch colours has a code within 24 levels (RGB distance).

    PYTHONPATH=src python bench/landscape_colour.py [--model landscapes] [--data DIR_OR_LIST] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

HELD_OUT = REPO / "src" / "vqforge" / "demo_assets" / "photos"


def saturation(x: torch.Tensor) -> torch.Tensor:
    """HSV saturation of images in [-1, 1], (B, 3, H, W) -> (B, H, W) in [0, 1]."""
    x = (x + 1) / 2
    mx, mn = x.max(1).values, x.min(1).values
    return torch.where(mx > 1e-6, (mx - mn) / mx.clamp_min(1e-6), torch.zeros_like(mx))


def chroma(x: torch.Tensor) -> torch.Tensor:
    """Distance of each pixel from the grey axis in 8-bit levels, (B, 3, H, W) in [-1, 1] -> (B, H, W)."""
    x = (x + 1) * 127.5
    return (x - x.mean(1, keepdim=True)).pow(2).sum(1).sqrt()


def colour_stats(rec: torch.Tensor, x: torch.Tensor) -> dict[str, float | list[float]]:
    """Colour statistics of one reconstruction against its photo, both (1, 3, H, W) in [-1, 1]."""
    from vqforge.metrics import psnr, ssim

    m_rec, m_x = (rec + 1).mean((0, 2, 3)) * 127.5, (x + 1).mean((0, 2, 3)) * 127.5  # (3,) in 0..255
    s_rec, s_x = float(saturation(rec).mean()), float(saturation(x).mean())
    return {"psnr": float(psnr(rec, x)), "ssim": float(ssim(rec, x)), "mean_err": float((m_rec - m_x).abs().mean()),
            "mean_bias": (m_rec - m_x).tolist(), "sat_rec": s_rec, "sat_photo": s_x,
            "sat_err": abs(s_rec - s_x), "chroma_rec": float(chroma(rec).mean()), "chroma_photo": float(chroma(x).mean())}


def summarise(rows: list[dict]) -> dict[str, float | list[float]]:
    """Means over photos of :func:`colour_stats` rows."""
    n = len(rows)
    out = {k: sum(r[k] for r in rows) / n for k in ("psnr", "ssim", "mean_err", "sat_rec", "sat_photo", "sat_err",
                                                    "chroma_rec", "chroma_photo")}
    out["mean_bias"] = [sum(r["mean_bias"][c] for r in rows) / n for c in range(3)]
    out["max_mean_err"] = max(r["mean_err"] for r in rows)
    out["max_sat_err"] = max(r["sat_err"] for r in rows)
    out["sat_ratio"] = out["sat_rec"] / max(out["sat_photo"], 1e-6)
    return out


def show(name: str, s: dict) -> None:
    b = ", ".join(f"{c} {v:+.1f}" for c, v in zip("RGB", s["mean_bias"]))
    print(f"{name}: PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.3f} | channel-mean error {s['mean_err']:.1f}/255 (max {s['max_mean_err']:.1f};"
          f" bias {b}) | saturation {s['sat_rec']:.3f} vs photo {s['sat_photo']:.3f} (x{s['sat_ratio']:.2f}, "
          f"error {s['sat_err']:.3f}, max {s['max_sat_err']:.3f}) | chroma {s['chroma_rec']:.1f} vs "
          f"{s['chroma_photo']:.1f}")


@torch.no_grad()
def code_colours(vq, n_codes: int, grid: int = 4) -> torch.Tensor:
    """The mean RGB (0..255) that each code paints as a uniform grid x grid token map: (n_codes, 3)."""
    out = []
    for ids in torch.arange(n_codes).split(64):
        idx = ids[:, None, None].expand(-1, grid, grid)  # (b, grid, grid)
        img = vq.decode_indices(idx).clamp(-1, 1)  # (b, 3, 8 grid, 8 grid)
        out.append((img + 1).mean((2, 3)) * 127.5)
    return torch.cat(out)


@torch.no_grad()
def loss_check(files: list[Path], vq) -> dict[str, dict[str, float]]:
    """L1 and Inception perceptual distance (as the training loss computes them) from 64 px centre crops of the
    photos to: the crops desaturated to 0.6 x their chroma, blurred (Gaussian, sigma 1 px), and reconstructed."""
    from vqforge.data.images import load_image_tensor
    from vqforge.losses.perceptual import build_perceptual

    net = build_perceptual("inception")
    x = torch.stack([load_image_tensor(p, size=64)[:, :64, :64] for p in files])  # (N, 3, 64, 64)
    grey = x.mean(1, keepdim=True)
    k = torch.exp(-torch.arange(-3, 4.0) ** 2 / 2)
    k = (k[:, None] * k[None, :] / k.sum() ** 2).expand(3, 1, 7, 7)
    variants = {"desaturated x0.6": grey + 0.6 * (x - grey),
                "blurred sigma 1": F.conv2d(F.pad(x, (3, 3, 3, 3), mode="reflect"), k, groups=3),
                "reconstructed": vq.decode_indices(vq.encode_to_indices(x)).clamp(-1, 1)}
    out = {}
    for name, y in variants.items():
        l1, p = float((y - x).abs().mean()), float(net(x, y).mean())
        out[name] = {"l1": l1, "perceptual": p, "ratio": p / max(l1, 1e-9)}
        print(f"loss check, {name:17s}: L1 {l1:.3f}, Inception perceptual {p:.3f} (perceptual / L1 = {p / l1:.1f})")
    return out


@torch.no_grad()
def main() -> int:
    from vqforge.api import load_vqgan
    from vqforge.data.images import find_images, load_image_tensor

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="landscapes", help="model name, model directory, run directory or checkpoint")
    ap.add_argument("--data", default=str(HELD_OUT), help="held-out photos (folder or .txt list)")
    ap.add_argument("--no-ema", action="store_true", help="a run's raw weights rather than its EMA weights")
    ap.add_argument("--crop", type=int, default=128, help="the centre-crop protocol's side (0: skip it)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--loss-check", action="store_true",
                    help="also print how the training loss's terms (L1, the Inception perceptual distance) respond "
                         "to a colour change (saturation x0.6) against a texture change (blur) on 64 px crops")
    ap.add_argument("--json", default="", help="also write the numbers here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.no_ema:
        import vqforge

        vq = vqforge.load(args.model, use_ema=False)
        vq = getattr(vq, "first_stage", vq).eval()
    else:
        vq = load_vqgan(args.model, "landscape_colour").eval()
    f = vq.downsample_factor
    files = find_images(args.data)
    result: dict = {"model": args.model, "data": args.data, "n": len(files)}
    protocols = {"full": dict(size=None, multiple_of=f)}
    if args.crop:
        protocols[f"crop{args.crop}"] = dict(size=args.crop, multiple_of=f)
    patch_colours, used = [], set()
    for name, kw in protocols.items():
        rows = {}
        for p in files:
            x = load_image_tensor(p, **kw).unsqueeze(0)  # (1, 3, H, W)
            if name != "full":  # square centre crop of the resized photo
                h, w = x.shape[-2:]
                s = min(h, w, args.crop)
                x = x[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
            idx = vq.encode_to_indices(x)  # (1, h/f, w/f)
            rec = vq.decode_indices(idx).clamp(-1, 1)
            rows[p.name] = colour_stats(rec, x)
            if name == "full":
                used.update(idx.flatten().tolist())
                patch_colours.append(((F.avg_pool2d(x, f) + 1) * 127.5).flatten(2).squeeze(0).T)  # (h w, 3)
        s = summarise(list(rows.values()))
        show(f"{name:7s} ({len(rows)} photos)", s)
        result[name] = {"summary": s, "per_image": rows}
        worst = sorted(rows.items(), key=lambda kv: -kv[1]["mean_err"])[:3]
        print("         worst channel means: " + "; ".join(f"{k} {v['mean_err']:.1f} ({v['psnr']:.1f} dB)"
                                                      for k, v in worst))
    # codebook colour coverage
    codes = code_colours(vq, vq.n_codes)  # (K, 3)
    patches = torch.cat(patch_colours)  # (P, 3)
    grey = lambda c: (c - c.mean(1, keepdim=True)).pow(2).sum(1).sqrt()  # noqa: E731  chroma of colours (N, 3)
    dist = torch.cdist(patches, codes).min(1).values  # (P,) nearest code colour per photo patch
    used_t = torch.tensor(sorted(used))
    dist_used = torch.cdist(patches, codes[used_t]).min(1).values
    q = torch.tensor([0.5, 0.9, 0.99])
    cov = {"codes_used_full": len(used), "n_codes": vq.n_codes,
           "code_chroma_q50_90_99": grey(codes).quantile(q).tolist(),
           "patch_chroma_q50_90_99": grey(patches).quantile(q).tolist(),
           "patches_within_24": float((dist <= 24).float().mean()),
           "patches_within_24_used_codes": float((dist_used <= 24).float().mean()),
           "patch_to_code_dist_q50_90": dist.quantile(q[:2]).tolist()}
    result["codebook"] = cov
    fmt = lambda v: "/".join(f"{a:.0f}" for a in v)  # noqa: E731
    print(f"codebook: {cov['codes_used_full']}/{cov['n_codes']} codes used on the photos; code colours' chroma "
          f"(50/90/99%) {fmt(cov['code_chroma_q50_90_99'])} vs photo 8x8 patches' {fmt(cov['patch_chroma_q50_90_99'])};"
          f" {cov['patches_within_24']:.0%} of patch colours have a code colour within 24 levels "
          f"({cov['patches_within_24_used_codes']:.0%} among the codes used); nearest-code distance 50/90% "
          f"{fmt(cov['patch_to_code_dist_q50_90'])}")
    if args.loss_check:
        result["loss_check"] = loss_check(files, vq)
    result["seconds"] = round(time.time() - t0, 1)
    if args.json:
        from vqforge.io import write_json

        write_json(Path(args.json), result)
    print(f"({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
