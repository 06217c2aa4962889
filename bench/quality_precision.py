"""What each decoding precision costs in quality, measured on the two bundled models (issue 26).

For fp32 / bf16 (where the CPU runs it) / int8 / int4 (group 32 and 128, round to nearest):

Every product of a quantised copy runs quantised here (``set_dense_rows(None)``), prefills and large batches
too; the sampler itself multiplies inputs of more than 16 rows by the fp32 weights, so its quality is at least this.

* **held-out NLL** (nats per image token) of both bundled models, the transformer run as that precision's
  inference copy (the packed bf16 or quantised layers; a full forward per row): ``fashion`` on the first
  ``--n-nll`` Fashion-MNIST test images (class token + 49 image tokens), ``landscapes`` on 64 px crops (stride 16,
  of the pairs scaled to 128 px, and mirrored) of the four held-out photo/map pairs in ``src/vqforge/demo_assets`` (their condition tokens as the
  sampler encodes a window: each crop alone);
* **teacher-forced top-1 agreement** with fp32 on the same rows, and **greedy agreement**: fashion sequences drawn
  greedily from each class token (``--n-greedy`` per class; equal tokens per position, and whole sequences equal);
* **weight error** of the format: relative RMS of (dequantised - fp32) over all quantised weights;
* **FID and class-match** of ``--n-fid`` fashion samples (classes in equal shares, the card's top-k 100 and
  guidance 2, the same seed for every precision) against the first ``--n-fid`` test images, the protocol of
  bench/quality_bundled.py; fp32 is sampled a second time with another seed: the FID difference between the two
  fp32 runs is the noise a precision's FID is judged against.

    PYTHONPATH=src python bench/quality_precision.py [--n-fid 1000] [--json bench/results/quality_precision.json]
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
sys.path.insert(0, str(REPO / "bench"))

from vqforge.io import write_json  # noqa: E402

PRECISIONS = ("fp32", "bf16", "int8", "int4", "int4-g128")


def options(name: str):
    """DecodeOptions for a precision name of this script (``int4-g128``: int4 at group 128)."""
    from vqforge.sampling.generate import DecodeOptions

    if name == "int4-g128":
        return DecodeOptions("int4", compile=False, group=128)
    return DecodeOptions(name, compile=False)


def inference_net(gpt, name: str):
    """The module that runs ``GPT.forward`` at precision ``name`` (what DecodeSession runs)."""
    from vqforge.sampling.cpu import packed
    from vqforge.sampling.quantized import quantized

    from vqforge.sampling.quantized import set_dense_rows

    if name == "fp32":
        return gpt
    if name == "bf16":
        return packed(gpt)
    net = quantized(gpt, "int4" if name.startswith("int4") else name, options(name).group)
    set_dense_rows(net, None)  # every product quantised: the sampler's prefills would run in fp32
    return net


def weight_error(gpt, name: str) -> float | None:
    """Relative RMS error of the quantised weights (None for fp32 / bf16)."""
    from vqforge.sampling.quantized import dequantize_int4, dequantize_int8, int4_fits, quantize_int4, quantize_int8

    if not name.startswith("int"):
        return None
    group = options(name).group
    num = den = 0.0
    for m in gpt.modules():
        if isinstance(m, torch.nn.Linear):
            w = m.weight.detach().float()
            if name.startswith("int4") and int4_fits(*w.shape, group):
                deq = dequantize_int4(*quantize_int4(w, group))
            else:
                deq = dequantize_int8(*quantize_int8(w))
            num += float(((deq - w) ** 2).sum())
            den += float((w ** 2).sum())
    return (num / den) ** 0.5


@torch.no_grad()
def nll_rows(net, seq: torch.Tensor, n_cond: int, batch: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """(NLL per image token (rows, T_img), argmax predictions (rows, T_img)) of ``seq`` (rows, Tc + T_img)."""
    losses, preds = [], []
    for b in seq.split(batch):
        logits = net(b[:, :-1]).float()[:, n_cond - 1:]  # (B, T_img, V): position p predicts token p + 1
        target = b[:, n_cond:]
        losses.append(F.cross_entropy(logits.transpose(1, 2), target, reduction="none"))
        preds.append(logits.argmax(-1))
    return torch.cat(losses), torch.cat(preds)


def fashion_rows(model, n: int) -> tuple[torch.Tensor, int]:
    from vqforge.data.fashion_mnist import load_fashion_mnist, to_model_images

    images, labels = load_fashion_mnist("test")
    x = to_model_images(images[:n], 28)
    with torch.no_grad():
        z = torch.cat([model.encode_to_z(b) for b in x.split(250)])  # (n, 49)
        c = model.encode_to_c(torch.from_numpy(labels[:n]).long())  # (n, 1)
    return torch.cat((c, z), 1), c.shape[1]


def landscape_rows(model) -> tuple[torch.Tensor, int]:
    """Rows of the held-out landscape pairs: 64 px crops at stride 16 of each pair scaled to 128 px on its short
    side (training scaled photos to 64-192 px), and their mirrors; condition tokens of each crop's map alone."""
    from vqforge.imageio import pil_to_tensor, read_image

    assets = REPO / "src" / "vqforge" / "demo_assets"
    cond = model.condition
    rows = []
    for mp in sorted((assets / "segmentations").iterdir()):
        photo = assets / "photos" / (mp.stem + ".jpg")
        if not photo.exists():
            continue
        c_full, image_hw = cond.read_condition(mp, None)
        h, w = image_hw
        s = 128 / min(h, w)
        hw = (max(64, round(h * s / 16) * 16), max(64, round(w * s / 16) * 16))
        c_in, _ = cond.read_condition(mp, hw)  # (1, ...) at hw
        img = pil_to_tensor(read_image(photo).resize((hw[1], hw[0])))[None]  # (1, 3, H, W)
        for flip in (False, True):
            ci, im = (c_in.flip(-1), img.flip(-1)) if flip else (c_in, img)
            for top in range(0, hw[0] - 63, 16):
                for left in range(0, hw[1] - 63, 16):
                    fc = ci.shape[-1] // hw[1]
                    crop_c = ci[..., top * fc:(top + 64) * fc, left * fc:(left + 64) * fc]
                    with torch.no_grad():
                        rows.append(torch.cat((model.encode_to_c(crop_c),
                                               model.encode_to_z(im[..., top:top + 64, left:left + 64])), 1))
    seq = torch.cat(rows)
    return seq, seq.shape[1] - model.latent_hw((64, 64))[0] * model.latent_hw((64, 64))[1]


def render(res: dict) -> str:
    """The quality table (markdown) of a result of this script."""
    def f(v, fmt):
        return "—" if v is None else format(v, fmt)

    fash, land = res["models"]["fashion"], res["models"]["landscapes"]
    lines = [f"- CPU: {res['cpu']}; torch {res['torch']}, {res['threads']} thread(s); {res['date']}.",
             f"- Held-out rows: fashion {fash['rows']} test images x {fash['image_tokens_per_row']} tokens; landscapes "
             f"{land['rows']} crops x {land['image_tokens_per_row']} tokens. Every product quantised.", "",
             "| precision | weight error (rel. RMS) | fashion NLL (− fp32, paired ± s.e.) | landscapes NLL (same) | top-1 = fp32 (fashion / landscapes) "
             "| greedy tokens = fp32 | FID | class match |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    names = list(fash["precisions"])
    for name in names:
        a, b = fash["precisions"][name], land["precisions"].get(name, {})
        def nll(r):
            if "nll" not in r:
                return "—"
            if "nll_minus_fp32" not in r or name == "fp32":
                return f"{r['nll']:.4f}"
            return f"{r['nll']:.4f} ({r['nll_minus_fp32']:+.4f} ± {r['nll_minus_fp32_sem']:.4f})"
        nll_b = nll(b)
        agree = f"{a['top1_agreement']:.3f} / {b['top1_agreement']:.3f}" if "top1_agreement" in a else "—"
        lines.append(f"| {name} | {f(a.get('weight_rel_rms_error'), '.4f')} | "
                     f"{nll(a)} | {nll_b} | {agree} | "
                     f"{f(a.get('greedy_token_agreement'), '.3f')} | "
                     f"{f(a.get('fid'), '.2f')} | {f(a.get('class_match'), '.1%')} |")
    n = next((a["fid_n"] for a in fash["precisions"].values() if "fid_n" in a), None)
    if n:
        lines.append("")
        lines.append(f"FID: {n} samples (guidance 2, top-k 100, seed 0) against the first {n} Fashion-MNIST test images; "
                     f"'fp32 (seed 1)' is fp32 again with another seed: the noise of this FID.")
    return "\n".join(lines)


def main() -> int:
    from gemv_bandwidth import cpu_name

    from vqforge import load
    from vqforge.devices import cpu_bf16_supported

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-nll", type=int, default=2000)
    ap.add_argument("--n-greedy", type=int, default=10, help="greedy sequences per class")
    ap.add_argument("--n-fid", type=int, default=1000, help="0: no FID")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "quality_precision.json"))
    ap.add_argument("--render", default=None, metavar="RESULT.json", help="print the table of a result and stop")
    args = ap.parse_args()
    if args.render:
        import json

        print(render(json.loads(Path(args.render).read_text())))
        return 0
    torch.set_num_threads(args.threads)
    names = [p for p in PRECISIONS if p != "bf16" or cpu_bf16_supported()]
    out = {"cpu": cpu_name(), "torch": torch.__version__, "threads": args.threads,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "models": {}}
    for model_name in ("fashion", "landscapes"):
        model = load(model_name).eval()
        gpt = model.transformer
        seq, n_cond = fashion_rows(model, args.n_nll) if model_name == "fashion" else landscape_rows(model)
        res = {"rows": seq.shape[0], "image_tokens_per_row": seq.shape[1] - n_cond, "precisions": {}}
        ref_pred = ref_loss = None
        for name in names:
            loss, pred = nll_rows(inference_net(gpt, name), seq, n_cond)
            ref_pred = pred if ref_pred is None else ref_pred
            ref_loss = loss if ref_loss is None else ref_loss
            delta = loss.mean(1) - ref_loss.mean(1)  # (rows,): paired with fp32, row by row
            res["precisions"][name] = {"nll": float(loss.mean()), "nll_sem": float(loss.mean(1).std() / loss.shape[0] ** .5),
                                       "nll_minus_fp32": float(delta.mean()),
                                       "nll_minus_fp32_sem": float(delta.std() / delta.shape[0] ** .5),
                                       "top1_agreement": float((pred == ref_pred).float().mean()),
                                       "weight_rel_rms_error": weight_error(gpt, name)}
            print(f"{model_name} {name}: NLL {loss.mean():.4f} nats/token, top-1 agreement with fp32 "
                  f"{(pred == ref_pred).float().mean():.4f}", flush=True)
        out["models"][model_name] = res
    # greedy agreement and FID on fashion
    from vqforge.data.fashion_mnist import load_fashion_mnist, to_model_images
    from vqforge.evaluate.classifier import class_match_rate, load_classifier
    from vqforge.evaluate.fid import FeatureStats, extract_features
    from vqforge.evaluate.samples import compare
    from vqforge.nn.inception import load_fid_inception
    from vqforge.sampling.generate import sample_tokens
    from vqforge.sampling.pipeline import condition_tokens, layout, sample_images
    from vqforge.sampling.processors import SamplingSettings
    from quality_bundled import pad32

    model = load("fashion").eval()
    fres = out["models"]["fashion"]
    for name in names:
        inference_net(model.transformer, name)  # the copies the sampler takes, every product quantised
    cls = torch.arange(10).repeat_interleave(args.n_greedy)[:, None]  # (10 n, 1)
    greedy = {}
    for name in names:
        with torch.no_grad():
            greedy[name] = sample_tokens(model.transformer, model.encode_to_c(cls.flatten()), 49,
                                         SamplingSettings(greedy=True), n_vocab=model.n_image_codes,
                                         decoding=options(name))
        same = greedy[name] == greedy["fp32"]
        fres["precisions"][name].update({"greedy_token_agreement": float(same.float().mean()),
                                         "greedy_sequences_equal": float(same.all(1).float().mean())})
        print(f"fashion {name}: greedy tokens equal to fp32 {same.float().mean():.3f}, whole sequences "
              f"{same.all(1).float().mean():.3f}", flush=True)
    if args.n_fid:
        n = args.n_fid
        images, labels = load_fashion_mnist("test")
        x = to_model_images(images[:n], 28)
        inception = load_fid_inception()
        ref = FeatureStats.from_features(extract_features(inception, pad32(x), 50, progress=False))
        classifier, _ = load_classifier()
        want = torch.arange(n) % 10
        settings = SamplingSettings(top_k=100, cfg_scale=2.0)
        lay = layout(model, cfg_scale=2.0)
        for name, seed in [(p, 0) for p in names] + [("fp32", 1)]:
            gen = torch.Generator().manual_seed(seed)
            t = time.time()
            imgs = []
            with torch.no_grad():
                for b in want.split(250):
                    cond, uncond = condition_tokens(model, lay, len(b), cond=b, cfg_scale=2.0)
                    imgs.append(sample_images(model, lay, cond, settings, gen, uncond, options(name))[0])
            imgs = torch.cat(imgs)
            st = FeatureStats.from_features(extract_features(inception, pad32(imgs), 50, progress=False))
            fid = compare(st, ref, fid_method="eigh")["fid"]
            match = class_match_rate(classifier, imgs, want)
            key = name if seed == 0 else "fp32 (seed 1)"
            fres["precisions"].setdefault(key, {}).update({"fid": fid, "class_match": match, "fid_n": n,
                                                           "sampling_seconds": round(time.time() - t, 1)})
            print(f"fashion {key}: FID {fid:.2f} (n={n}), class match {match:.1%} ({time.time() - t:.0f} s)",
                  flush=True)
    write_json(Path(args.json), out)
    print(render(out))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
