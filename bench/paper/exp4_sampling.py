"""Experiment 4 (sampling choices): FID and class-match of a class-conditional model's samples against top-k, top-p,
temperature, classifier-free guidance scale and classifier-based rejection sampling at several acceptance rates
(``vqforge sample --reject-with CLASSIFIER --acceptance R``, vqforge.sampling.rejection), each family as a curve.

    PYTHONPATH=src python bench/paper/exp4_sampling.py [--model fashion] [--n-eval 1000] [--seeds 0 1]

Samples go through the library's own sampling path (draw_batches / rejection_batches), classes in equal shares.
Rejection scores with the bundled classifier (vqforge/demo_assets/fashion_classifier.safetensors); class-match is
judged by a second classifier trained with another seed (bench/train_fashion_classifier.py --seed 1, trained once
into the run directory), so that rejection is not graded by its own judge. Budget: no training; n-eval samples per
setting and seed (rejection at acceptance R draws n-eval / R); ``--measure 1`` times one batch here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

PAPER = {"section": "4.4 (class-conditional ImageNet, Table 4)",
         "statement": "Sampling choices trade diversity for quality; rejection sampling with a classifier at low "
                      "acceptance rates lowers FID substantially.",
         "number": "ImageNet 256 px FID 15.78 without rejection, 5.20 at acceptance 0.05 (Table 4)"}

#: family -> [(value, settings)]; the first setting of every family but rejection is the plain baseline
def families(toy: bool, acceptances: list[float]) -> dict[str, list[tuple[float, dict]]]:
    if toy:
        return {"top-k": [(0, {}), (10, {"top_k": 10})], "cfg": [(2, {"cfg_scale": 2.0})],
                "rejection": [(a, {"acceptance": a}) for a in acceptances]}
    return {
        "top-k": [(0, {}), (10, {"top_k": 10}), (30, {"top_k": 30}), (100, {"top_k": 100}), (300, {"top_k": 300})],
        "top-p": [(0.5, {"top_p": 0.5}), (0.8, {"top_p": 0.8}), (0.9, {"top_p": 0.9}), (0.95, {"top_p": 0.95})],
        "temperature": [(0.7, {"temperature": 0.7}), (0.85, {"temperature": 0.85}), (1.15, {"temperature": 1.15})],
        "cfg": [(0.5, {"cfg_scale": 0.5}), (1, {"cfg_scale": 1.0}), (2, {"cfg_scale": 2.0}), (3, {"cfg_scale": 3.0}),
                (4, {"cfg_scale": 4.0})],
        "rejection": [(a, {"acceptance": a}) for a in acceptances],
    }


def judge(work: Path, toy: bool, log: C.Log):
    """The class-match judge: a classifier trained with seed 1 (toy runs: the bundled one)."""
    from vqforge.evaluate.classifier import load_classifier

    if toy:
        return load_classifier()[0], "the bundled classifier (toy run)"
    out = work / "judge"
    if not (out / "fashion_classifier.safetensors").is_file():
        log("training the judge classifier (seed 1)")
        subprocess.run([sys.executable, str(C.REPO / "bench" / "train_fashion_classifier.py"), "--seed", "1",
                        "--out", str(out)], check=True)
    return load_classifier(out / "fashion_classifier.safetensors")[0], "a classifier trained with seed 1"


@torch.no_grad()  # not inference_mode: the CPU decode path keys its packed weights on parameter versions
def main() -> int:
    from vqforge import load
    from vqforge.evaluate.classifier import class_match_rate, class_probability, load_classifier, as_classifier_input
    from vqforge.sampling import SamplingSettings, draw_batches, layout
    from vqforge.sampling.rejection import plan_rejection, rejection_batches

    ap = C.parser(__doc__, "exp4_sampling")
    ap.add_argument("--model", default="fashion", help="class-conditional transformer (model dir or bundled name)")
    ap.add_argument("--acceptances", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.1])
    ap.add_argument("--batch", type=int, default=250)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work) / "exp4_sampling"
    log = C.Log(work)
    model = load(args.model).eval()
    n_classes = model.config.cond.n_classes
    inputs = [torch.tensor([c]) for c in range(n_classes)]
    scorer_clf, _ = load_classifier()

    def score(x, picks):
        return class_probability(scorer_clf, x, torch.tensor(picks))

    def draw(settings: dict, n: int, seed: int) -> tuple[torch.Tensor, float]:
        s = dict(settings)
        acceptance = s.pop("acceptance", None)
        sampling = SamplingSettings(**s)
        lay = layout(model, cfg_scale=sampling.cfg_scale)
        gen = torch.Generator().manual_seed(seed)
        t = time.process_time() if args.measure else time.perf_counter()  # --measure: CPU time (see common)
        if acceptance is None:
            batches = draw_batches(model, lay, inputs, n, args.batch, sampling, gen)
        else:
            plan = plan_rejection(n, n_classes, acceptance)
            batches = rejection_batches(model, lay, inputs, plan, args.batch, sampling, score, gen)
        x = torch.cat([b for _, b in batches])
        return x, ((time.process_time() if args.measure else time.perf_counter()) - t) / n

    if args.measure:
        x, s = draw({}, args.batch, 0)
        grid = families(args.toy, args.acceptances)
        draws = sum(len(v) for v in grid.values()) - 1 + sum(1 / a - 1 for a in args.acceptances)
        hours = s * draws * args.n_eval * len(args.seeds) / 3600
        print(f"{s:.3f} s per sample; {draws:.0f} settings' worth x {args.n_eval} samples x {len(args.seeds)} seeds = "
              f"{hours:.2f} h (plus FID)")
        C.write_budget(args, "exp4_sampling", "4", [{"arm": f"all settings, {args.model}",
                                                     "cost": f"{s:.3f} s/sample (batch {args.batch})", "hours": hours}])
        return 0
    fid = C.FID(args.data, args.n_eval, 28)
    judge_clf, judge_why = judge(work, args.toy, log)
    n = args.n_eval or 20
    want = torch.arange(n) % n_classes
    rows = []
    for family, points in families(args.toy, args.acceptances).items():
        for value, settings in points:
            key = f"{family}_{value:g}".replace(".", "p")
            runs = []
            for seed in args.seeds:
                def one(settings=settings, seed=seed, key=key):
                    log(f"{key} seed {seed}: {n} samples")
                    x, secs = draw(settings, n, seed)
                    return {"samples": fid(x), "seconds_per_sample": secs,
                            "class_match": class_match_rate(judge_clf, as_classifier_input(x), want)}
                runs.append(C.cached(work / f"{key}_seed{seed}.json", one))
            rows.append({"arm": f"{family} {value:g}", "family": family, "value": value,
                         "settings": {k: v for k, v in settings.items()}, "seeds": list(args.seeds),
                         "fid": C.spread([(r["samples"] or {}).get("fid") for r in runs]),
                         "class_match": C.spread([r["class_match"] for r in runs]),
                         "seconds_per_sample": C.spread([r["seconds_per_sample"] for r in runs])})
    rej = [r for r in rows if r["family"] == "rejection"]
    base = next((r for r in rej if r["value"] == 1.0), None)
    low = min(rej, key=lambda r: r["value"]) if rej else None
    if base is not None and low is not None and low is not base:
        noise = sum((r["fid"]["max"] or 0) - (r["fid"]["min"] or 0) for r in (base, low))
        v = C.compare_verdict(low["fid"]["mean"], base["fid"]["mean"], "lower", 0.5, noise, 0)
    else:
        v = "not measured"
    C.write_results(args.json, {
        "experiment": 4, "title": "Sampling choices", "paper": PAPER,
        "setting": f"the {args.model} model, {n} samples per setting and seed (classes in equal shares), FID against "
                   f"as many Fashion-MNIST test images; rejection scored by the bundled classifier, class-match judged "
                   f"by {judge_why}",
        "budget": {"samples": n, "seeds": list(args.seeds), "acceptances": list(args.acceptances)},
        "rows": rows, "columns": ["fid", "class_match", "seconds_per_sample"],
        "verdict": {"rejection lowers FID": v},
        "plots": [{"kind": "tradeoff", "file": "exp4_tradeoff.png", "x": "class_match", "y": "fid",
                   "title": "FID against class-match, one curve per sampling choice"}],
        "toy": args.toy})
    return 0


if __name__ == "__main__":
    sys.exit(main())
