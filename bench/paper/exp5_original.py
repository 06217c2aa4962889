"""Experiment 5 (vqforge against the original, trained the same way): on the same Fashion-MNIST data, the original's
VQGAN and transformer (taming-transformers-rom1504, its own modules, losses, optimisers and training order, driven
here without Lightning) and vqforge's defaults (its own trainers, configs/bundled/fashion_*.yaml), the same
architecture, steps, batch and learning rate: rFID, PSNR, codebook usage, then the transformer's held-out NLL, sample
FID / class-match, and wall time.

    make bench-venv    # the original, installed --no-deps beside vqforge (never a dependency of vqforge)
    PYTHONPATH=src .bench-venv/bin/python bench/paper/exp5_original.py [--vqgan-steps 3000] [--gpt-steps 3000]

The original's training, as its Lightning modules do it: per step, the autoencoder's optimiser on the generator loss
(VQLPIPSWithDiscriminator, optimizer_idx 0), then the autoencoder runs again and the discriminator's optimiser steps
on the discriminator loss (optimizer_idx 1); both Adam(betas 0.5, 0.9). Its transformer: class ids as condition
tokens sharing the code embedding (its Labelator), teacher-forced cross-entropy after the condition, AdamW (minGPT's
groups, weight decay 0.01, betas 0.9, 0.95) at a constant rate, sampled with its ``sample_with_past``. The perceptual
term is off in both arms (vqforge's fashion config has none; the original's LPIPS needs weights that are not here).
Budget (default): 3000 + 3000 steps per arm and seed, batch 32 (VQGAN) and 64 (transformer); ``--measure 3`` times
both arms here (docs/paper.md gives the figures).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
from vqforge.train.transformer import param_groups  # noqa: E402

PAPER = {"section": "(the original's code, not a claim of the paper)",
         "statement": "vqforge reproduces the original's numerics bit for bit on its own configs; trained the same "
                      "way, it should reach at least the original's quality, faster.",
         "number": "the original's own training of the same architecture on the same data (this table)"}

COLUMN_NAMES = {"rfid": "rFID", "fid": "sample FID", "test_nll": "held-out NLL", "usage": "codebook usage"}
FASHION_GPT = C.REPO / "src" / "vqforge" / "configs" / "bundled" / "fashion_transformer.yaml"


def shapes(toy: bool) -> dict:
    """The bundled fashion architecture (toy: smaller), as the original's ddconfig and minGPT sizes."""
    dd = {"ch": 32 if toy else 64, "out_ch": 1, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [7],
          "dropout": 0.0, "resamp_with_conv": True, "in_channels": 1, "resolution": 28,
          "z_channels": 16 if toy else 64, "double_z": False}
    n_layer, n_head, n_embd = C.gpt_shape(toy)
    return {"dd": dd, "n_embed": 512, "embed_dim": 16 if toy else 64, "n_layer": n_layer, "n_head": n_head,
            "n_embd": n_embd, "lr": 4e-4, "gpt_lr": 6e-4, "disc_ndf": 8 if toy else 32}


# ============================================================================================ the original
def original_vqgan(run: Path, x: torch.Tensor, steps: int, batch: int, disc_start: int, seed: int, toy: bool,
                   log: C.Log, save_every: int = 500, clock=time.perf_counter):
    """Train the original's VQGAN on images ``x`` (N, 1, 28, 28) its way; resumable from ``run/orig_vqgan.pt``."""
    from vqforge.benchmarks.original import OrigVQModel, load

    s = shapes(toy)
    m = load()
    loss = m.VQLPIPSWithDiscriminator(disc_start=disc_start, codebook_weight=1.0, pixelloss_weight=1.0,
                                      disc_num_layers=2, disc_in_channels=1, disc_factor=1.0, disc_weight=0.5,
                                      perceptual_weight=0.0, disc_ndf=s["disc_ndf"])
    torch.manual_seed(seed)
    model = OrigVQModel(s["dd"], s["n_embed"], s["embed_dim"], loss=loss)
    opt_ae = torch.optim.Adam(model.autoencoder_parameters(), lr=s["lr"], betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(loss.discriminator.parameters(), lr=s["lr"], betas=(0.5, 0.9))
    run.mkdir(parents=True, exist_ok=True)
    ck = run / "orig_vqgan.pt"
    state = {"step": 0, "seconds": 0.0}
    if ck.is_file():
        saved = torch.load(ck, weights_only=True)
        model.load_state_dict(saved["model"])
        opt_ae.load_state_dict(saved["opt_ae"])
        opt_d.load_state_dict(saved["opt_d"])
        state = saved["state"]
    model.train()
    t0 = clock()
    while state["step"] < steps:
        step = state["step"]
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        xb = x[torch.randint(0, len(x), (batch,), generator=g)]
        xrec, qloss = model(xb)  # optimizer_idx 0: the autoencoder
        aeloss, _ = loss(qloss, xb, xrec, 0, step, last_layer=model.get_last_layer(), split="train")
        opt_ae.zero_grad()
        aeloss.backward()
        opt_ae.step()
        xrec, qloss = model(xb)  # optimizer_idx 1: Lightning runs the autoencoder again for the discriminator
        dloss, _ = loss(qloss, xb, xrec, 1, step, last_layer=model.get_last_layer(), split="train")
        opt_d.zero_grad()
        dloss.backward()
        opt_d.step()
        state["step"] = step + 1
        if state["step"] % save_every == 0 or state["step"] == steps:
            state["seconds"] += clock() - t0
            torch.save({"model": model.state_dict(), "opt_ae": opt_ae.state_dict(), "opt_d": opt_d.state_dict(),
                        "state": state}, ck)
            log(f"original VQGAN: step {state['step']}/{steps}, ae loss {float(aeloss.detach()):.4f}, "
                f"{state['seconds']:.0f} s")
            t0 = clock()
    return model.eval(), state


class OrigCodes:
    """The original VQGAN's encode (indices (N, h*w)) and decode, for the shared metrics."""

    def __init__(self, model):
        self.m = model
        self.n_codes = model.quantize.n_e

    @torch.no_grad()
    def encode_to_indices(self, x: torch.Tensor) -> torch.Tensor:
        h = self.m.quant_conv(self.m.encoder(x))
        _, _, (_, _, idx) = self.m.quantize(h)
        return idx.view(x.shape[0], *h.shape[2:])

    @torch.no_grad()
    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        B, h, w = idx.shape
        q = self.m.quantize.get_codebook_entry(idx.flatten(), (B, h, w, self.m.quantize.e_dim))
        return self.m.decoder(self.m.post_quant_conv(q))

    def eval(self):
        return self


class OrigGPT(torch.nn.Module):
    """The original's minGPT with its class conditioning: the label as one condition token, sharing the code
    vocabulary (Labelator), loss on the image tokens after it."""

    def __init__(self, n_codes: int, n_tokens: int, toy: bool):
        super().__init__()
        from vqforge.benchmarks.original import load

        s = shapes(toy)
        self.n_tokens = n_tokens
        p = 0.0 if toy else 0.1  # the bundled fashion transformer's dropout, as the vqforge arm has it
        self.gpt = load().GPT(vocab_size=n_codes, block_size=n_tokens, n_layer=s["n_layer"], n_head=s["n_head"],
                              n_embd=s["n_embd"], embd_pdrop=p, resid_pdrop=p, attn_pdrop=p)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cz = torch.cat((y[:, None], z), dim=1)  # (B, 1 + N)
        logits, _ = self.gpt(cz[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), z.reshape(-1))

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator, temperature: float = 1.0, top_k=None):
        from vqforge.benchmarks.original import load

        self.eval()
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))  # it samples from the global RNG
        out = load().sample_with_past(y[:, None], self.gpt, self.n_tokens, temperature=temperature, top_k=top_k)
        return out[:, -self.n_tokens:]


def train_orig_gpt(model: OrigGPT, z: torch.Tensor, y: torch.Tensor, val: tuple, steps: int, batch: int, lr: float,
                   run: Path, seed: int, log: C.Log, eval_every: int) -> dict:
    """The original's transformer training (constant lr, AdamW) on codes ``z``; resumable; an NLL curve on ``val``."""
    ck = run / "orig_gpt.pt"
    # minGPT's split, as the original's configure_optimizers (Linear weights decay): vqforge's trainer's rule
    opt = torch.optim.AdamW(param_groups(model.gpt, 0.01), lr=lr, betas=(0.9, 0.95))
    state = C.resume(ck, model, opt)
    if state is None:
        state = {"step": 0, "seconds": 0.0, "curve": []}
        torch.manual_seed(seed)
        state["curve"].append({"step": 0, "seconds": 0.0, "nll": C.held_out_nll(model, *val)})
    model.train()
    t0 = time.perf_counter()
    while state["step"] < steps:
        step = state["step"]
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        b = torch.randint(0, len(z), (batch,), generator=g)
        loss = model.loss(z[b], y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["step"] = step + 1
        if state["step"] % eval_every == 0 or state["step"] == steps:
            state["seconds"] += time.perf_counter() - t0
            state["curve"].append({"step": state["step"], "seconds": round(state["seconds"], 2),
                                   "nll": C.held_out_nll(model, *val)})
            C.checkpoint(ck, model, opt, state)
            log(f"original GPT: step {state['step']}/{steps}, held-out NLL {state['curve'][-1]['nll']:.4f}")
            t0 = time.perf_counter()
    return state


def original_arm(run: Path, seed: int, args, fid: C.FID, log: C.Log) -> dict:
    n_train = 256 if args.toy else None
    x_tr, y_tr = C.images(args.data, "train", n_train, 28)
    x_te, y_te = C.images(args.data, "test", 64 if args.toy else None, 28)
    model, st = original_vqgan(run, x_tr, args.vqgan_steps, 32 if not args.toy else 4, disc_start(args), seed,
                               args.toy, log)
    vq = OrigCodes(model)
    n_rec = max(fid.n, 16) if args.toy else max(fid.n, 1000)
    recon = C.cached(run / "recon.json", lambda: C.reconstruction(vq, x_te[:n_rec], fid))

    def second():
        z_tr, z_te = C.encode(vq, x_tr), C.encode(vq, x_te)
        grid = tuple(recon["grid"])
        m = OrigGPT(vq.n_codes, grid[0] * grid[1], args.toy)
        val_n = 64 if args.toy else 2000
        s = train_orig_gpt(m, z_tr, y_tr, (z_te[:val_n], y_te[:val_n]), args.gpt_steps, args.batch,
                           shapes(args.toy)["gpt_lr"], run, seed, log, max(1, min(250, args.gpt_steps // 4)))
        rec = {"seconds": s["seconds"], "curve": s["curve"], "test_nll": C.held_out_nll(m, z_te, y_te)}
        rec.update(sample_metrics(lambda b, gen: m.sample(b, gen), vq, grid, fid, seed))
        return rec

    return {"vqgan_seconds": st["seconds"], "recon": recon, **C.cached(run / "second.json", second)}


# ============================================================================================ vqforge
def disc_start(args) -> int:
    return 2 if args.toy else int(args.vqgan_steps * 0.4)


def vqforge_arm(run: Path, seed: int, args, fid: C.FID, log: C.Log) -> dict:
    from vqforge import load
    from vqforge.data.tokens import write_tokens
    from vqforge.evaluate.nll import token_nll
    from vqforge.train.transformer import load_config, train_transformer

    n_train = 256 if args.toy else None
    spec = C.image_folder(Path(args.work), args.data, n_train, 28)
    s = shapes(args.toy)
    ov = [*C.vqgan_overrides(args.toy), f"loss.disc_start={disc_start(args)}", f"train.learning_rate={s['lr']}",
          f"loss.disc_ndf={s['disc_ndf']}", f"train.seed={seed}"]
    wall = C.train_first_stage(run / "vqgan", spec, ov, args.vqgan_steps, log)
    vq = load(run / "vqgan").eval()
    x_te, y_te = C.images(args.data, "test", 64 if args.toy else None, 28)
    n_rec = max(fid.n, 16) if args.toy else max(fid.n, 1000)
    recon = C.cached(run / "recon.json", lambda: C.reconstruction(vq, x_te[:n_rec], fid))

    def second():
        from vqforge.data.fashion_mnist import CLASS_NAMES

        x_tr, y_tr = C.images(args.data, "train", n_train, 28)
        grid = tuple(recon["grid"])
        for name, x, y in (("tokens", x_tr, y_tr), ("val_tokens", x_te, y_te)):
            if not (run / name / "meta.json").is_file():
                write_tokens(run / name, C.encode(vq, x).numpy(), grid, vq.n_codes, (28, 28),
                             source_model=str(run / "vqgan"), labels=y.numpy(), label_names=list(CLASS_NAMES))
        n_layer, n_head, n_embd = C.gpt_shape(args.toy)
        cfg = load_config(FASHION_GPT, [f"model.gpt.n_layer={n_layer}", f"model.gpt.n_head={n_head}",
                                            f"model.gpt.n_embd={n_embd}", f"train.batch_size={args.batch}",
                                            f"train.max_steps={args.gpt_steps}", f"train.learning_rate={s['gpt_lr']}",
                                            f"train.warmup_steps={min(300, args.gpt_steps // 10)}",
                                            f"train.val_data={run / 'val_tokens'}", "train.preview_every=0",
                                            f"train.val_every={max(1, min(250, args.gpt_steps // 4))}",
                                            f"train.seed={seed}",
                                            *(["train.checkpoint_every=1", "train.val_batches=2"] if args.toy else [])])
        gpt_run = run / "gpt"
        t = time.time()
        resume = (gpt_run / "checkpoints" / "last.pt").is_file()
        res = train_transformer(None if resume else cfg, str(run / "tokens"), gpt_run,
                    first_stage=str(run / "vqgan"), resume=(gpt_run / "checkpoints" / "last.pt").is_file(),
                    max_steps=args.gpt_steps, quiet=True)
        if res.step < args.gpt_steps:
            raise SystemExit(f"{gpt_run}: stopped at step {res.step}; run again to resume")
        secs = time.time() - t
        model = load(gpt_run).eval()
        z_te = C.encode(vq, x_te)
        nll = token_nll(model, zip(z_te.split(250), model.encode_to_c(y_te).split(250)), progress=False)
        curve = [json.loads(line) for line in (gpt_run / "metrics.jsonl").open()]
        curve = [{"step": c["step"], "nll": c["val/loss"]} for c in curve if "val/loss" in c]
        rec = {"seconds": secs, "curve": curve, "test_nll": nll["nats_per_token"]}
        rec.update(sample_metrics(vqforge_sampler(model), vq, grid, fid, seed))
        return rec

    return {"vqgan_seconds": wall["seconds"], "recon": recon, **C.cached(run / "second.json", second)}


def vqforge_sampler(model):
    """Codes (B, N) of the library's sampling path: temperature 1, no top-k, no guidance (as the original arm)."""
    from vqforge.sampling import SamplingSettings, condition_tokens, layout, sample_image_tokens

    lay = layout(model)

    def sample(y, gen):
        cond, _ = condition_tokens(model, lay, len(y), cond=y)
        return sample_image_tokens(model, lay, cond, SamplingSettings(), gen).flatten(1)

    return sample


def sample_metrics(sample, vq, grid, fid: C.FID, seed: int) -> dict:
    if not fid.n:
        return {}
    labels = torch.arange(fid.n) % 10
    gen = torch.Generator().manual_seed(seed)
    t = time.perf_counter()
    x = torch.cat([C.decode(vq, sample(b, gen), grid) for b in labels.split(100)])
    return {"sample_seconds_per_image": (time.perf_counter() - t) / fid.n, "samples": fid(x),
            "class_match": C.class_match(x, labels)}


def main() -> int:
    from vqforge.benchmarks.original import available

    ap = C.parser(__doc__, "exp5_original")
    ap.add_argument("--vqgan-steps", type=int, default=3000)
    ap.add_argument("--gpt-steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64, help="transformer batch (VQGAN: 32)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    why = available()
    if why:
        raise SystemExit(f"exp5_original: {why}")
    work = Path(args.work) / "exp5_original"
    log = C.Log(work)
    if args.measure:
        x, y = C.images(args.data, "train", 256, 28)
        # CPU time of the steps (as common.measure_steps), after a warm-up run of one step
        original_vqgan(work / "measure", x, 1, 32, 0, 0, args.toy, log, save_every=10**9)
        (work / "measure" / "orig_vqgan.pt").unlink(missing_ok=True)
        _, st = original_vqgan(work / "measure", x, args.measure, 32, 0, 0, args.toy, log, save_every=10**9,
                               clock=time.process_time)
        s_orig = st["seconds"] / args.measure
        (work / "measure" / "orig_vqgan.pt").unlink(missing_ok=True)
        spec = C.image_folder(Path(args.work), args.data, None, 28)
        s_vq = C.measure_vqgan(spec, [*C.vqgan_overrides(args.toy), "train.learning_rate=4e-4"], args.measure)
        z = torch.randint(0, 512, (512, 49))
        budget = C.ARBudget(steps=args.gpt_steps, batch=args.batch)
        g_orig = C.measure_steps(OrigGPT(512, 49, args.toy), (z, torch.randint(0, 10, (512,))), budget, args.measure)
        g_vq = C.measure_steps(C.ClassGPT(512, 10, 49, *C.gpt_shape(args.toy)), (z, torch.randint(0, 10, (512,))),
                               budget, args.measure)
        costs = []
        for name, a, b in (("original", s_orig, g_orig), ("vqforge", s_vq, g_vq)):
            h = (a * args.vqgan_steps + b * args.gpt_steps) * len(args.seeds) / 3600
            print(f"{name}: VQGAN {a:.3f} s/step, GPT {b:.3f} s/step; {h:.2f} h for the budget")
            costs.append({"arm": name, "cost": f"VQGAN {a:.2f} s/step, transformer {b:.2f} s/step", "hours": h})
        C.write_budget(args, "exp5_original", "5", costs)
        return 0
    fid = C.FID(args.data, args.n_eval, 28)
    rows = []
    for name, arm in (("original", original_arm), ("vqforge", vqforge_arm)):
        runs = [arm(work / f"{name}_seed{seed}", seed, args, fid, log) for seed in args.seeds]
        rows.append(C.arm_row(name, runs, args.seeds))
    o, v = rows

    def rng(r, k):
        return (r[k]["max"] or 0) - (r[k]["min"] or 0)

    words = {"reproduced": "vqforge better", "reversed at this scale": "the original better",
             "not reproduced (within the seed spread)": "no difference beyond the seed spread",
             "not measured": "not measured"}
    verdict = {COLUMN_NAMES[k]: words[C.compare_verdict(v[k]["mean"], o[k]["mean"], better, margin, rng(v, k),
                                                        rng(o, k))]
               for k, better, margin in (("rfid", "lower", 1.0), ("fid", "lower", 1.0), ("test_nll", "lower", 0.01),
                                         ("usage", "higher", 0.02))}
    C.write_results(args.json, {
        "experiment": 5, "title": "vqforge against the original, trained the same way", "paper": PAPER,
        "setting": f"class-conditional Fashion-MNIST ({args.data}) 28 px, the bundled fashion architecture (f4, 512 "
                   f"codes, GPT {C.gpt_shape(args.toy)}); both arms {args.vqgan_steps} VQGAN steps of batch 32 "
                   f"(lr 4e-4, "
                   f"GAN from step {disc_start(args)}, no perceptual term) and {args.gpt_steps} transformer steps of "
                   f"batch {args.batch}; vqforge with its defaults (k-means init, restarts, EMA weights, bf16 where "
                   f"native, warmup + cosine), the original its own (fp32, constant lr)",
        "budget": {"vqgan_steps": args.vqgan_steps, "gpt_steps": args.gpt_steps, "seeds": list(args.seeds)},
        "rows": rows, "columns": ["rfid", "psnr", "usage", "perplexity", "test_nll", "fid", "class_match",
                                  "vqgan_seconds", "gpt_seconds", "sample_seconds_per_image"],
        "verdict": verdict,
        "plots": [{"kind": "curves", "file": "exp5_nll.png", "x": ["step"], "y": "nll",
                   "title": "transformer held-out NLL (nats/token)"}],
        "toy": args.toy})
    return 0


if __name__ == "__main__":
    sys.exit(main())
