"""Quality baseline on Fashion-MNIST: train the tiny VQGAN and a class-conditional transformer within a
wall-clock CPU budget, then measure reconstruction FID and sample FID / KID / precision-recall against
the test set, with and without classifier-free guidance.

    PYTHONPATH=src python bench/quality.py --work runs/quality [--vqgan-minutes 7 --gpt-minutes 7 --n-eval 2000]

Phases (each skipped when its output exists, so an interrupted run resumes): PNG export of the training
images (VQGAN trainer reads folders) -> VQGAN training (vqforge.train.vqgan, stopped by SIGTERM at the
budget) -> tokens of the 60k training images (vqforge.data.tokens) -> transformer training
(vqforge.train.transformer, same budget rule) -> evaluation (vqforge.evaluate). Results go to
WORK/quality.json and a markdown table is printed for docs/benchmarks.md.

Images: the 28x28 grayscale images padded with black to 32x32 (vqforge.data.fashion_mnist.to_model_images)
and repeated to RGB; the Inception features see them resized to 299 as usual.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vqforge.io import write_json  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fmnist(split: str, limit: int | None = None):
    from vqforge.data.fashion_mnist import load_fashion_mnist, to_model_images

    images, labels = load_fashion_mnist(split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return to_model_images(images, 32, 3), torch.from_numpy(labels)  # (N, 3, 32, 32) in [-1, 1], (N,)


def with_budget(seconds: float, fn, *args, **kwargs):
    """Run a vqforge training loop; SIGTERM at ``seconds`` asks it to save and return (its StopRequest)."""
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
    timer.daemon = True
    t0 = time.time()
    timer.start()
    try:
        out = fn(*args, **kwargs)
    finally:
        timer.cancel()
    return out, time.time() - t0


# ------------------------------------------------------------------------------------------------ phases
def export_pngs(out: Path, n: int) -> Path:
    from vqforge.imageio import save_tensor_image

    done = out / "DONE"
    if done.exists():
        return out
    x, _ = fmnist("train", n)
    log(f"exporting {len(x)} training images to {out}")
    for i in range(len(x)):
        save_tensor_image(out / f"{i // 1000:03d}" / f"{i:06d}.png", x[i, :1])  # grayscale PNG (read back as RGB)
    done.write_text("ok\n")
    return out


def train_first_stage(work: Path, data: Path, minutes: float, args) -> Path:
    from vqforge.train.vqgan import load_config, train_vqgan

    run = work / "vqgan"
    if (run / "DONE").exists():
        return run
    resume = (run / "checkpoints" / "last.pt").is_file()  # an earlier session was cut short: continue it
    before = json.loads((run / "bench.json").read_text()) if (run / "bench.json").is_file() else {}
    cfg = load_config(REPO / "configs" / "vqgan_tiny.yaml",
                      ["train.image_size=32", "train.crop=center", "train.flip=false",
                       f"train.batch_size={args.vqgan_batch}", "train.val_fraction=0.02", "train.max_val_images=128",
                       "train.max_steps=1000000", "train.val_every=0", "train.preview_every=2000",
                       "train.checkpoint_every=500", "train.keep_every=0", "train.device=cpu"]
                      + ([f"loss.disc_start={args.disc_start}"] if args.disc_start is not None else []))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, data=str(data)))
    log(f"training the VQGAN for {minutes} min (configs/vqgan_tiny.yaml, batch {args.vqgan_batch}, resume={resume})")
    res, secs = with_budget(minutes * 60, train_vqgan, cfg if not resume else None, run, resume=resume, quiet=True)
    secs += before.get("seconds", 0.0)
    info = {"steps": res.step, "seconds": secs, "sessions": before.get("sessions", 1 if before else 0) + 1,
            "stopped_by": res.stopped_by, "batch_size": args.vqgan_batch,
            "disc_start": cfg.loss.disc_start, "train_images": args.n_train_png, "lr": cfg.train.learning_rate}
    write_json(run / "bench.json", info)
    (run / "DONE").write_text("ok\n")
    log(f"VQGAN: {res.step} steps in {secs:.0f} s")
    return run


def encode_tokens(work: Path, vqgan_run: Path, n: int) -> Path:
    from vqforge.api import load
    from vqforge.data.fashion_mnist import CLASS_NAMES
    from vqforge.data.tokens import write_tokens

    out = work / "tokens"
    if (out / "meta.json").exists():
        return out
    model = load(vqgan_run).eval()
    x, y = fmnist("train", n)
    log(f"encoding {len(x)} training images to tokens")
    idx = []
    with torch.inference_mode():
        for i in range(0, len(x), 500):
            idx.append(model.encode_to_indices(x[i:i + 500]).flatten(1))  # (B, h*w)
    z = torch.cat(idx).numpy()
    grid = tuple(model.encode_to_indices(x[:1]).shape[1:])
    write_tokens(out, z, grid, model.n_codes, (32, 32), source_model=str(vqgan_run), labels=y.numpy(),
                 label_names=list(CLASS_NAMES))
    return out


def train_second_stage(work: Path, vqgan_run: Path, tokens: Path, minutes: float, args) -> Path:
    from vqforge.models.conditioning import ClassConfig
    from vqforge.models.gpt import GPTConfig
    from vqforge.models.transformer import TransformerConfig
    from vqforge.train.transformer import TransformerRunConfig, TransformerSettings, train_transformer

    run = work / "gpt"
    if (run / "DONE").exists():
        return run
    gpt = GPTConfig(vocab_size=256, block_size=80, n_layer=args.n_layer, n_head=4, n_embd=args.n_embd,
                    embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
    model = TransformerConfig(gpt=gpt, cond=ClassConfig(n_classes=10, null_class=True, dropout=0.1))
    tc = TransformerSettings(batch_size=args.gpt_batch, learning_rate=args.gpt_lr, warmup_steps=100,
                                max_steps=args.gpt_max_steps, min_lr_ratio=0.1, val_fraction=0.02, val_every=0,
                                val_batches=20, preview_every=0, checkpoint_every=500, image_size=32,
                                precision="fp32", device="cpu", seed=0)
    cfg = TransformerRunConfig(model=model, train=tc)
    log(f"training the transformer for {minutes} min ({args.n_layer} layers, {args.n_embd} wide, batch {args.gpt_batch})")
    res, secs = with_budget(minutes * 60, train_transformer, cfg, str(tokens), run, first_stage=str(vqgan_run),
                            quiet=True)
    write_json(run / "bench.json", {**res.record(), "seconds": secs, "batch_size": args.gpt_batch, "lr": args.gpt_lr,
                                    "n_layer": args.n_layer, "n_embd": args.n_embd, "max_steps": args.gpt_max_steps})
    (run / "DONE").write_text("ok\n")
    log(f"transformer: {res.step} steps in {secs:.0f} s, val {res.last_val}")
    return run


@torch.inference_mode()
def sample_class_images(model, labels: torch.Tensor, cfg_scale: float, gen: torch.Generator, batch: int) -> torch.Tensor:
    """Class-conditional samples (N, 3, 32, 32) in [-1, 1] with vqforge.sampling (temperature 1, no top-k).

    ``cfg_scale``: vqforge.sampling's guidance strength, logits ``cond + s (cond - uncond)`` (0 = off).
    """
    from vqforge.sampling.pipeline import condition_tokens, layout, sample_images
    from vqforge.sampling.processors import SamplingSettings

    lay = layout(model, (32, 32))
    settings = SamplingSettings(cfg_scale=cfg_scale)
    out = []
    for lab in labels.split(batch):
        c, u = condition_tokens(model, lay, len(lab), classes=lab, cfg_scale=cfg_scale)
        out.append(sample_images(model, lay, c, settings, generator=gen, uncond=u)[0])
    return torch.cat(out)


def evaluate_all(work: Path, vqgan_run: Path, gpt_run: Path, tokens: Path, args) -> dict:
    from vqforge.api import load
    from vqforge.evaluate.fid import FeatureStats, extract_features
    from vqforge.evaluate.nll import token_nll
    from vqforge.evaluate.reconstruction import evaluate_reconstruction, try_lpips
    from vqforge.evaluate.samples import compare
    from vqforge.imageio import save_grid
    from vqforge.nn.inception import load_fid_inception

    inception = load_fid_inception()
    n = args.n_eval
    x_test, y_test = fmnist("test", n)
    ref_path = work / f"fmnist_test_{n}.npz"
    if ref_path.exists():
        ref = FeatureStats.load(ref_path)
    else:
        log(f"embedding {n} test images")
        ref = FeatureStats.from_features(extract_features(inception, x_test, 50, progress=False),
                                         source=f"Fashion-MNIST test[:{n}], 32x32 padded, RGB")
        ref.save(ref_path, with_features=True)
    results: dict = {}
    rpath = work / "recon.json"
    if rpath.exists():
        results["recon"] = json.loads(rpath.read_text())
    else:
        log("reconstruction metrics")
        vq = load(vqgan_run).eval()
        lpips, why = try_lpips()
        rec = evaluate_reconstruction(vq, x_test.split(50), total=n, inception=inception, lpips=lpips, lpips_skipped=why,
                                      real_features=ref.features, fid_method=args.fid_method, progress=False)
        write_json(rpath, rec)
        results["recon"] = rec
    model = load(gpt_run).eval()
    # held-out NLL on the test split's tokens
    vq = model.first_stage
    with torch.inference_mode():
        z_test = torch.cat([vq.encode_to_indices(b).flatten(1) for b in x_test.split(500)])
    c_test = model.encode_to_c(y_test)
    results["nll_test"] = token_nll(model, zip(z_test.split(100), c_test.split(100)), image_hw=(32, 32),
                                    channels=3, progress=False)
    for scale in args.cfg_scales:
        key = f"samples_cfg{scale:g}"
        spath = work / f"{key}.json"
        if spath.exists():
            results[key] = json.loads(spath.read_text())
            continue
        log(f"sampling {n} images, cfg_scale {scale}")
        gen = torch.Generator().manual_seed(0)
        labels = torch.arange(n) % 10
        t0 = time.time()
        imgs = sample_class_images(model, labels, scale, gen, args.sample_batch)
        t_sample = time.time() - t0
        save_grid(work / f"{key}.png", imgs[:100], nrow=10)
        log(f"embedding {n} samples")
        st = FeatureStats.from_features(extract_features(inception, imgs, 50, progress=False), source=key)
        res = compare(st, ref, fid_method=args.fid_method)
        res["sampling_seconds"] = t_sample
        res["cfg_scale"] = scale
        write_json(spath, res)
        results[key] = res
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="runs/quality")
    ap.add_argument("--vqgan-minutes", type=float, default=7.0)
    ap.add_argument("--gpt-minutes", type=float, default=7.0)
    ap.add_argument("--n-train-png", type=int, default=20000, help="training images exported for the VQGAN")
    ap.add_argument("--n-train-tokens", type=int, default=20000, help="training images encoded for the transformer")
    ap.add_argument("--vqgan-batch", type=int, default=16)
    ap.add_argument("--disc-start", type=int, default=None, help="GAN term start step (default: the config's)")
    ap.add_argument("--gpt-batch", type=int, default=64)
    ap.add_argument("--gpt-lr", type=float, default=1e-3)
    ap.add_argument("--gpt-max-steps", type=int, default=3000, help="sets the cosine schedule's length")
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--n-eval", type=int, default=2000, help="test images / samples per FID")
    ap.add_argument("--sample-batch", type=int, default=250)
    ap.add_argument("--cfg-scales", type=float, nargs="+", default=[0.0, 2.0],
                    help="vqforge.sampling cfg_scale values: logits cond + s (cond - uncond); 0 = no guidance")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fid-method", default="eigh", choices=("sqrtm", "eigh"),
                    help="eigh: the same value as sqrtm (tests: 1e-6 relative), exact for n < 2048 and much faster")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    signal.signal(signal.SIGTERM, lambda *a: None)  # a late budget signal must not kill the benchmark
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = export_pngs(work / "train_png", args.n_train_png)
    vqgan_run = train_first_stage(work, data, args.vqgan_minutes, args)
    tokens = encode_tokens(work, vqgan_run, args.n_train_tokens)
    gpt_run = train_second_stage(work, vqgan_run, tokens, args.gpt_minutes, args)
    results = evaluate_all(work, vqgan_run, gpt_run, tokens, args)
    summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": "cpu",
               "cpu": platform.processor() or platform.machine(), "threads": args.threads, "torch": torch.__version__,
               "args": vars(args), "vqgan": json.loads((vqgan_run / "bench.json").read_text()),
               "gpt": json.loads((gpt_run / "bench.json").read_text()), "total_seconds": time.time() - t0, **results}
    write_json(work / "quality.json", summary)
    log(f"wrote {work / 'quality.json'}")
    r = results["recon"]
    print("\n| metric | value |\n|---|---|")
    print(f"| VQGAN rFID ({r['n_images']} test images) | {r['rfid']:.2f} |")
    print(f"| VQGAN PSNR / SSIM | {r['psnr']:.2f} dB / {r['ssim']:.4f} |")
    print(f"| codebook usage / perplexity | {r['codes_used']}/{r['n_codes']} / {r['perplexity']:.1f} |")
    print(f"| test NLL | {results['nll_test']['bits_per_dim']:.4f} bits/dim |")
    for scale in args.cfg_scales:
        s = results[f"samples_cfg{scale:g}"]
        print(f"| samples, cfg_scale {scale:g}: FID / KID / P / R | {s['fid']:.2f} / {s['kid_mean']:.4f} / "
              f"{s['precision']:.3f} / {s['recall']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
