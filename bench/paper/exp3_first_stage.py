"""Experiment 3 (paper Section 4.4.2, how good is the VQGAN): at equal codebook size (512) and f (4), first stages
trained with the same steps and batch: a plain VQVAE (L2 reconstruction only), the paper's VQGAN (L1 + perceptual +
patch GAN, plain codebook) and the VQGAN with each of vqforge's improved quantizers (l2-normalised low-dimensional
codes, k-means init and dead-code restarts, FSQ, EMA). rFID, PSNR, codebook usage and perplexity, then the held-out
NLL and sample FID of the same transformer trained on each arm's codes.

    PYTHONPATH=src python bench/paper/exp3_first_stage.py [--vqgan-steps 3000] [--gpt-steps 3000] [--seeds 0 1]

The perceptual term is the paper's LPIPS when its VGG16 weights are installed, else the offline Inception term
(recorded in the JSON: it flatters rFID). Budget (default): 3000 + 3000 steps per arm and seed; ``--measure 3`` times
each arm here (docs/paper.md gives the figures).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

PAPER = {"section": "4.4.2",
         "statement": "The VQGAN's perceptual and adversarial losses give far better reconstructions at the same "
                      "compression than a VQVAE trained for pixel reconstruction (and than DALL-E's dVAE), and "
                      "better first stages give better transformers.",
         "number": "ImageNet val reconstructions (Table 5): VQGAN f16 rFID 7.94 (1024 codes) and 4.98 (16384); "
                   "DALL-E dVAE f8 rFID 32.01"}

PLAIN = ["model.quantizer.kind=vq", "model.quantizer.kmeans_init=false", "model.quantizer.restart_after=0"]


def arms(perceptual: str, steps: int, toy: bool) -> dict[str, list[str]]:
    gan = [f"loss.perceptual={perceptual}", "loss.perceptual_weight=" + ("0.1" if perceptual == "inception"
                                                                          else "1.0"),
           *([] if toy else [f"loss.disc_start={int(steps * 0.4)}"])]
    return {
        "vqvae (L2)": [*PLAIN, "loss.pixel_loss=l2", "loss.perceptual=none", "loss.disc_start=1000000000"],
        "vqgan (paper)": [*PLAIN, *gan],
        "vqgan + l2-normalised 8-d codes": ["model.quantizer.kind=l2", "model.quantizer.codebook_dim=8",
                                            "model.quantizer.kmeans_init=false", "model.quantizer.restart_after=0",
                                            *gan],
        "vqgan + k-means init, restarts": ["model.quantizer.kind=vq", "model.quantizer.kmeans_init=true",
                                           "model.quantizer.restart_after=200", *gan],
        "vqgan + FSQ 8x8x8": ["model.quantizer.kind=fsq", "model.quantizer.levels=[8,8,8]",
                              "model.quantizer.embed_dim=3", *gan],
        "vqgan + EMA codebook": ["model.quantizer.kind=ema", "model.quantizer.kmeans_init=false",
                                 "model.quantizer.restart_after=0", *gan],
    }


def main() -> int:
    ap = C.parser(__doc__, "exp3_first_stage")
    ap.add_argument("--vqgan-steps", type=int, default=3000)
    ap.add_argument("--gpt-steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64, help="transformer batch (the VQGAN's is the config's 32)")
    ap.add_argument("--perceptual", default="auto", choices=("auto", "lpips-vgg16", "inception", "none"),
                    help="the VQGAN arms' perceptual term (auto: LPIPS when its weights are here, else Inception)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work) / "exp3_first_stage"
    log = C.Log(work)
    if args.perceptual == "auto":
        perceptual, why = C.perceptual_choice()
    else:
        perceptual, why = args.perceptual, "chosen with --perceptual"
    budget = C.ARBudget(steps=args.gpt_steps, batch=args.batch, warmup=min(300, args.gpt_steps // 10),
                        eval_every=max(1, min(250, args.gpt_steps // 4)), val_images=64 if args.toy else 2000)
    spec = C.image_folder(work.parent, args.data, 256 if args.toy else None, 28)
    if args.measure:
        costs = [C.measure_pair(name, spec, [*C.vqgan_overrides(args.toy), *ov], args.vqgan_steps, budget, 49, 512,
                                args.toy, args.measure, len(args.seeds))
                 for name, ov in arms(perceptual, args.vqgan_steps, args.toy).items()]
        C.write_budget(args, "exp3_first_stage", "3", costs)
        return 0
    fid = C.FID(args.data, args.n_eval, 28)
    rows = []
    for i, (name, ov) in enumerate(arms(perceptual, args.vqgan_steps, args.toy).items()):
        runs = [C.stage_pair(work, f"arm{i}", seed, args, [*C.vqgan_overrides(args.toy), *ov], 28, args.vqgan_steps,
                             budget, fid, log) for seed in args.seeds]
        rows.append(C.arm_row(name, runs, args.seeds, overrides=ov))

    def rng(r, k):
        return (r[k]["max"] or 0) - (r[k]["min"] or 0)

    vqvae, vqgan = rows[0], rows[1]
    verdict = {"rFID: VQGAN vs VQVAE": C.compare_verdict(vqgan["rfid"]["mean"], vqvae["rfid"]["mean"], "lower", 1.0,
                                                          rng(vqgan, "rfid"), rng(vqvae, "rfid")),
               "sample FID: VQGAN vs VQVAE": C.compare_verdict(vqgan["fid"]["mean"], vqvae["fid"]["mean"], "lower",
                                                               1.0, rng(vqgan, "fid"), rng(vqvae, "fid"))}
    scored = [r for r in rows if r["rfid"]["mean"] is not None]
    if scored:
        verdict["best first stage (rFID)"] = min(scored, key=lambda r: r["rfid"]["mean"])["arm"]
    C.write_results(args.json, {
        "experiment": 3, "title": "How good is the VQGAN", "paper": PAPER,
        "setting": f"Fashion-MNIST ({args.data}) 28 px, f4, 512 codes, {args.vqgan_steps} VQGAN steps of batch 32 per "
                   f"arm (GAN from 40%); perceptual term: {perceptual} ({why}); transformers "
                   f"{C.gpt_shape(args.toy)} (layers, heads, width), {args.gpt_steps} steps of batch {args.batch}; "
                   f"FID of {args.n_eval} samples",
        "budget": {"vqgan_steps": args.vqgan_steps, "gpt_steps": args.gpt_steps, "seeds": list(args.seeds)},
        "rows": rows, "columns": ["rfid", "psnr", "usage", "perplexity", "test_nll", "fid", "class_match",
                                  "vqgan_seconds"],
        "verdict": verdict,
        "plots": [{"kind": "bars", "file": "exp3_fid.png", "x": "arm", "y": ["rfid", "fid"],
                   "title": "rFID and sample FID per first stage"}],
        "toy": args.toy})
    return 0


if __name__ == "__main__":
    sys.exit(main())
