"""``make demo`` / ``python -m vqforge.demo``: train the tiny VQGAN on the bundled photos, on CPU, in minutes.

Trains ``configs/vqgan_tiny.yaml`` on ``assets/photos`` (18 real photos, see ``assets/README.md``) for a
time budget (default 5 minutes of training), then reconstructs held-out center crops and writes into
``demo-out/``:

* ``run/`` the training run directory (``config.yaml``, ``checkpoints/last.pt``, ``metrics.jsonl``, ``tb/``,
  ``images/``); ``vqforge.load("demo-out/run")`` returns the model;
* ``reconstructions.png``: held-out photos (128 x 128 center crops, top row) and their reconstructions;
* ``psnr.json``: PSNR / SSIM / L1 per image and their means, before and after training.

Options: ``--minutes``, ``--out``, ``--steps`` (a fixed number of steps instead of a time budget).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _find(rel: str) -> Path:
    """A bundled file: next to the source tree (editable install) or in the working directory."""
    for base in (ROOT, Path.cwd()):
        if (base / rel).exists():
            return base / rel
    raise SystemExit(f"vqforge demo: cannot find {rel} (run from the vqforge checkout)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vqforge.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--minutes", type=float, default=5.0, help="training time budget (default: 5)")
    p.add_argument("--steps", type=int, default=None, help="train exactly this many steps instead")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    args = p.parse_args(argv)

    from .config import apply_overrides, load_yaml
    from .data.images import find_images, load_rgb, split_files, to_tensor
    from .io import write_json
    from .metrics import psnr, ssim
    from .imageio import save_grid
    from .train.vqgan import VQGANTrainConfig, train_vqgan

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = Path(args.out)
    run_dir = out / "run"
    photos = _find("assets/photos")
    cfg = load_yaml(VQGANTrainConfig, _find("configs/vqgan_tiny.yaml"))
    # 32 px training crops taken from photos resized to 128 px: the model learns at the scale at which the
    # held-out photos are reconstructed below (128 x 128 center crops; the model is convolutional).
    cfg = apply_overrides(cfg, ["device=cpu", "data.resize=128", "schedule.val_every=100"])
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train=str(photos)))

    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    print(f"vqforge demo: training a {cfg.model.quantizer.n_embed}-code VQGAN (f{cfg.model.ddconfig.downsample_factor}) "
          f"on {len(find_images(photos))} photos from {photos} "
          + (f"for {args.steps} steps" if args.steps else f"for {args.minutes:g} minutes"), flush=True)
    if args.steps is None:
        result = train_vqgan(cfg, run_dir, max_steps=1_000_000, max_seconds=args.minutes * 60, show_progress=False)
    else:
        result = train_vqgan(cfg, run_dir, max_steps=args.steps)
    train_time = time.perf_counter() - t0

    # Reconstruct the held-out photos.
    from . import load

    model = load(run_dir)
    _, val_files = split_files(find_images(photos), cfg.data.val_fraction, seed=cfg.seed)
    side = cfg.data.resize
    xs = []
    for f in val_files:
        img = load_rgb(f)
        w, h = img.size
        s = side / min(w, h)
        img = img.resize((max(side, round(w * s)), max(side, round(h * s))))
        left, top = (img.size[0] - side) // 2, (img.size[1] - side) // 2
        xs.append(to_tensor(img.crop((left, top, left + side, top + side))))
    x = torch.stack(xs)  # (N, 3, side, side)
    with torch.no_grad():
        xrec = model(x).reconstruction.clamp(-1, 1)
    ps, ss = psnr(xrec, x), ssim(xrec, x)
    l1 = (xrec - x).abs().flatten(1).mean(1)
    save_grid(out / "reconstructions.png", torch.cat([x, xrec]), nrow=len(xs))
    metrics_log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val0 = next((m for m in metrics_log if m["step"] == 0 and "val/psnr" in m), {})
    report = {
        "steps": result.step,
        "train_seconds": round(train_time, 1),
        "steps_per_second": round(result.step / train_time, 2),
        "images": [{"file": f.name, "psnr": round(float(a), 3), "ssim": round(float(b), 4), "l1": round(float(c), 4)}
                   for f, a, b, c in zip(val_files, ps, ss, l1)],
        "mean_psnr": round(float(ps.mean()), 3),
        "mean_ssim": round(float(ss.mean()), 4),
        "mean_l1": round(float(l1.mean()), 4),
        "validation_crops": {"before_training": {k: round(v, 4) for k, v in val0.items() if k != "step"},
                             "after_training": {k: round(v, 4) for k, v in result.last_val.items()}},
    }
    write_json(out / "psnr.json", report)
    print(f"vqforge demo: {result.step} steps in {train_time / 60:.1f} min ({result.step / train_time:.2f} it/s); held-out photos ({side}x{side}): "
          f"PSNR {report['mean_psnr']:.2f} dB, SSIM {report['mean_ssim']:.3f} "
          f"(validation crops: PSNR {val0.get('val/psnr', float('nan')):.2f} dB before training -> "
          f"{result.last_val.get('val/psnr', float('nan')):.2f} dB after)")
    print(f"vqforge demo: wrote {out / 'reconstructions.png'} (top: inputs, bottom: reconstructions), "
          f"{out / 'psnr.json'}, run directory {run_dir}; total {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
