"""Experiment 1 (paper Section 4.1, "attention is all you need in the latent space"): on the same VQGAN codes, the
transformer against a PixelSNAIL-style convolutional autoregressive model (bench/paper/pixelsnail.py) of about the
same parameter count, trained the same number of steps with the same batch, optimiser, schedule and data order
(one loop, common.train_ar). Held-out NLL (nats per token, Fashion-MNIST test split) as curves over steps and over
training wall time; the FID and class-match of samples at the end.

    PYTHONPATH=src python bench/paper/exp1_attention.py [--steps 3000] [--seeds 0 1] [--n-eval 1000]

Codes: the bundled ``fashion`` model's first stage (f4, 512 codes, 7 x 7 tokens of 28 x 28 images), or with
``--first-stage DIR`` any VQGAN. Budget (default): 3000 steps of batch 64 per arm and seed; measured on this machine
with ``--measure 5`` (docs/paper.md gives the figures). Equal wall time: the faster arm's curve is read at the slower
arm's total training time, and the slower arm's at the faster arm's (``nll_at_equal_time``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
from pixelsnail import matched  # noqa: E402

PAPER = {"section": "4.1",
         "statement": "On the same VQGAN codes, a transformer reaches a lower negative log-likelihood than "
                      "PixelSNAIL at equal training steps and at equal training time, across data sets.",
         "number": "Table 1: NLL of both models on the codes of several data sets, at equal training steps and "
                   "at equal training time; the transformer's is lower in every row"}


def arm_model(name: str, n_codes: int, grid: tuple[int, int], toy: bool):
    n = grid[0] * grid[1]
    gpt = C.ClassGPT(n_codes, 10, n, *((2, 2, 32) if toy else (6, 8, 256)))
    if name == "transformer":
        return gpt
    model, _ = matched(n_codes, 10, grid, C.n_params(gpt), n_blocks=2 if toy else 4, n_res=1 if toy else 2,
                       embed=16 if toy else 64)
    return model


def interp(curve: list[dict], seconds: float) -> float:
    """Held-out NLL of a curve at ``seconds`` of training (linear between evaluations; the last value beyond)."""
    t = [c["seconds"] for c in curve]
    return float(np.interp(seconds, t, [c["nll"] for c in curve]))


def main() -> int:
    ap = C.parser(__doc__, "exp1_attention")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--first-stage", default="fashion", help="VQGAN (model or run dir, or a bundled name)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work) / "exp1_attention"
    log = C.Log(work)
    from vqforge import load

    fs = load(args.first_stage)
    vq = fs.first_stage if hasattr(fs, "first_stage") else fs
    vq.eval()
    size = vq.config.ddconfig.resolution
    grid = (size // vq.downsample_factor,) * 2
    budget = C.ARBudget(steps=args.steps, batch=args.batch, warmup=min(300, args.steps // 10),
                        eval_every=max(1, min(250, args.steps // 4)), val_images=64 if args.toy else 2000)
    if args.measure:
        costs = []
        for name in ("transformer", "pixelsnail"):
            m = arm_model(name, vq.n_codes, grid, args.toy)
            z = torch.randint(0, vq.n_codes, (512, grid[0] * grid[1]))  # random codes: the cost is the same
            s = C.measure_steps(m, (z, torch.randint(0, 10, (512,))), budget, args.measure)
            hours = s * args.steps * len(args.seeds) / 3600
            print(f"{name}: {C.n_params(m)} parameters, {s:.3f} s/step; {args.steps} steps x {len(args.seeds)} "
                  f"seeds = {hours:.2f} h")
            costs.append({"arm": f"{name} ({C.n_params(m) / 1e6:.2f} M parameters)", "cost": f"{s:.2f} s/step",
                          "hours": hours})
        C.write_budget(args, "exp1_attention", "1", costs)
        return 0
    n_train = 256 if args.toy else None
    codes = work / f"codes_{args.data}_{n_train or 'all'}.pt"  # encoded once, for every arm, seed and resume
    if codes.is_file():
        z_tr, y_tr, z_te, y_te, grid = torch.load(codes, weights_only=True)
    else:
        x_tr, y_tr = C.images(args.data, "train", n_train, size)
        x_te, y_te = C.images(args.data, "test", 64 if args.toy else None, size)
        z_tr, z_te = C.encode(vq, x_tr), C.encode(vq, x_te)
        grid = tuple(vq.encode_to_indices(x_tr[:1]).shape[1:])
        work.mkdir(parents=True, exist_ok=True)
        torch.save((z_tr, y_tr, z_te, y_te, grid), codes)
    fid = C.FID(args.data, args.n_eval, size)
    arms = {}
    for name in ("transformer", "pixelsnail"):
        runs = []
        for seed in args.seeds:
            run = work / f"{name}_seed{seed}"

            def train_and_sample(name=name, seed=seed, run=run):
                C.seed_all(seed)
                m = arm_model(name, vq.n_codes, grid, args.toy)
                rec = C.train_ar(m, (z_tr, y_tr), (z_te, y_te), budget, run, seed, log)
                rec["test_nll"] = C.held_out_nll(m, z_te, y_te)
                if args.n_eval:
                    labels = torch.arange(args.n_eval) % 10
                    gen = torch.Generator().manual_seed(seed)
                    t = time.perf_counter()
                    z = torch.cat([m.sample(b, gen) for b in labels.split(100)])
                    rec["sample_seconds_per_image"] = (time.perf_counter() - t) / args.n_eval
                    imgs = C.decode(vq, z, grid)
                    rec["samples"] = fid(imgs)
                    rec["class_match"] = C.class_match(imgs, labels)
                return rec

            runs.append(C.cached(run / "result.json", train_and_sample))
        arms[name] = runs
    slower = max(np.mean([r["seconds"] for r in arms[a]]) for a in arms)
    faster = min(np.mean([r["seconds"] for r in arms[a]]) for a in arms)
    rows = []
    for name, runs in arms.items():
        rows.append({
            "arm": name, "params": runs[0]["params"], "steps": runs[0]["steps"],
            "train_seconds": C.spread([r["seconds"] for r in runs]),
            "test_nll": C.spread([r["test_nll"] for r in runs]),
            "nll_at_equal_time": C.spread([interp(r["curve"], faster) for r in runs]),
            "fid": C.spread([(r.get("samples") or {}).get("fid") for r in runs]),
            "class_match": C.spread([r.get("class_match") for r in runs]),
            "sample_seconds_per_image": C.spread([r.get("sample_seconds_per_image") for r in runs]),
            "seeds": list(args.seeds), "curves": [r["curve"] for r in runs]})
    t, p = rows
    noise_t = t["test_nll"]["max"] - t["test_nll"]["min"]
    noise_p = p["test_nll"]["max"] - p["test_nll"]["min"]
    steps_v = C.compare_verdict(t["test_nll"]["mean"], p["test_nll"]["mean"], "lower", 0.005, noise_t, noise_p)
    time_v = C.compare_verdict(t["nll_at_equal_time"]["mean"], p["nll_at_equal_time"]["mean"], "lower", 0.005,
                               noise_t, noise_p)
    C.write_results(args.json, {
        "experiment": 1, "title": "Attention is all you need in the latent space", "paper": PAPER,
        "setting": f"class-conditional Fashion-MNIST ({args.data}), codes of {args.first_stage}'s first stage "
                   f"({grid[0]}x{grid[1]} tokens, {vq.n_codes} codes); each arm {args.steps} steps of batch "
                   f"{args.batch}, AdamW, warmup + cosine, the same batches; NLL on {len(z_te)} test images; "
                   f"equal-time NLL read at {faster:.0f} s (the faster arm's total: slower {slower:.0f} s)",
        "budget": {"steps": args.steps, "batch": args.batch, "seeds": list(args.seeds)},
        "rows": rows, "columns": ["params", "test_nll", "nll_at_equal_time", "fid", "class_match",
                                  "train_seconds", "sample_seconds_per_image"],
        "verdict": {"equal steps": steps_v, "equal time": time_v},
        "plots": [{"kind": "curves", "file": "exp1_nll.png", "x": ["step", "seconds"], "y": "nll",
                   "title": "held-out NLL (nats/token)"}],
        "toy": args.toy})
    return 0


if __name__ == "__main__":
    sys.exit(main())
