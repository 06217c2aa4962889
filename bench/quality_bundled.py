"""Quality of a trained class-conditional Fashion-MNIST model (default: the bundled `fashion`), on the protocol of
bench/quality.py (docs/benchmarks.md, "Quality"): N samples (classes in equal shares) against the first N test
images, both zero-padded from 28 to 32 px and repeated to RGB, with the standard FID Inception network; plus the
first stage's reconstruction FID / PSNR / codebook usage on the same test images, and the class-match rate of the
samples under the bundled classifier (vqforge.evaluate.classifier).

    PYTHONPATH=src python bench/quality_bundled.py [--model fashion] [--n-eval 1000] [--cfg-scales 0 2 4]
        [--top-k 0 100] [--json bench/results/quality_fashion.json]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vqforge.io import write_json  # noqa: E402


def pad32(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) in [-1, 1] -> (N, 3, 32, 32), black borders, as bench/quality.py's images."""
    return F.pad(x, (2, 2, 2, 2), value=-1.0).expand(-1, 3, -1, -1)


@torch.no_grad()  # not inference_mode: the CPU decode path keys its packed weights on parameter versions
def main() -> int:
    from vqforge import load
    from vqforge.data.fashion_mnist import load_fashion_mnist, to_model_images
    from vqforge.evaluate.classifier import class_match_rate, load_classifier
    from vqforge.evaluate.fid import FeatureStats, extract_features
    from vqforge.metrics import psnr
    from vqforge.evaluate.samples import compare
    from vqforge.sampling.pipeline import condition_tokens, layout, sample_images
    from vqforge.sampling.processors import SamplingSettings
    from vqforge.nn.inception import load_fid_inception

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="fashion")
    ap.add_argument("--n-eval", type=int, default=1000)
    ap.add_argument("--cfg-scales", type=float, nargs="+", default=[0.0, 2.0, 4.0])
    ap.add_argument("--top-k", type=int, nargs="+", default=[0, 100], help="0 = no top-k (bench/quality.py's setting)")
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "quality_fashion.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    n = args.n_eval
    model = load(args.model)
    images, labels = load_fashion_mnist("test")
    x = to_model_images(images[:n], 28)  # (n, 1, 28, 28)
    inception = load_fid_inception()
    ref = FeatureStats.from_features(extract_features(inception, pad32(x), 50, progress=False),
                                     source=f"Fashion-MNIST test[:{n}], 32x32 padded, RGB")
    vq = model.first_stage
    idx = torch.cat([vq.encode_to_indices(b) for b in x.split(250)])  # (n, 7, 7)
    xr = torch.cat([vq.decode_indices(b).clamp(-1, 1) for b in idx.split(250)])
    rec_st = FeatureStats.from_features(extract_features(inception, pad32(xr), 50, progress=False))
    used = idx.unique().numel()
    rec = {"rfid": compare(rec_st, ref, fid_method="eigh")["fid"], "psnr": float(psnr(xr, x).mean()),
           "codes_used": used, "n_codes": vq.n_codes, "codebook_usage": used / vq.n_codes}
    classifier, card = load_classifier()
    out = {"model": args.model, "n_eval": n, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "cpu": platform.processor() or platform.machine(), "threads": args.threads, "torch": torch.__version__,
           "classifier_test_accuracy": card.get("test_accuracy"), "recon": rec, "samples": []}
    test_rate = class_match_rate(classifier, x, torch.from_numpy(labels[:n]))
    out["classifier_on_test_images"] = test_rate
    for k in args.top_k:
        for scale in args.cfg_scales:
            gen = torch.Generator().manual_seed(0)
            want = torch.arange(n) % model.config.cond.n_classes
            lay = layout(model, cfg_scale=scale)
            settings = SamplingSettings(top_k=k or None, cfg_scale=scale)
            t = time.time()
            imgs = []
            for b in want.split(args.batch):
                cond, uncond = condition_tokens(model, lay, len(b), cond=b, cfg_scale=scale)
                imgs.append(sample_images(model, lay, cond, settings, gen, uncond)[0])
            imgs = torch.cat(imgs)
            secs = time.time() - t
            st = FeatureStats.from_features(extract_features(inception, pad32(imgs), 50, progress=False))
            res = compare(st, ref, fid_method="eigh")
            res.update({"cfg_scale": scale, "top_k": k, "class_match": class_match_rate(classifier, imgs, want),
                        "sampling_seconds": round(secs, 1)})
            out["samples"].append(res)
            print(f"top-k {k or '-'} cfg {scale:g}: FID {res['fid']:.2f} KID {res['kid_mean']:.4f} "
                  f"class match {res['class_match']:.1%} ({secs:.0f} s)", flush=True)
    out["total_seconds"] = round(time.time() - t0)
    write_json(Path(args.json), out)
    print(f"\nreconstruction: rFID {rec['rfid']:.2f}, PSNR {rec['psnr']:.2f} dB, codes used "
          f"{rec['codes_used']}/{rec['n_codes']}; classifier on the test images {test_rate:.1%}; wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
