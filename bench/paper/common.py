"""What the paper experiments (bench/paper/exp*.py, issue 25) share: arguments, run directories and logs, the data
(Fashion-MNIST, or small synthetic images for toy runs), first-stage training through vqforge's own trainer, one
resumable autoregressive training loop for every second stage that is not vqforge's trainer, FID / reconstruction
metrics on the protocol of bench/quality_bundled.py, and the results JSON that bench/paper/render.py renders.

Every stage of an experiment writes its outcome to a small JSON in its run directory and is skipped when that file
exists; a stage that was cut short resumes from its checkpoint. Toy runs (``--toy``) use tiny models, a few steps and
a few images, so that the test suite runs each experiment end to end in seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from vqforge.io import save_torch, write_json  # noqa: E402

RESULTS = REPO / "bench" / "results" / "paper"
FASHION_VQGAN = REPO / "src" / "vqforge" / "configs" / "bundled" / "fashion_vqgan.yaml"


# ============================================================================================ arguments, logs
def parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The options every experiment takes (each adds its own)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(REPO / "runs" / "paper"), help="run directories go to WORK/" + name)
    ap.add_argument("--json", default=str(RESULTS / f"{name}.json"), help="results JSON (rendered into docs/paper.md)")
    ap.add_argument("--data", default="fashion-mnist", choices=("fashion-mnist", "synthetic"),
                    help="Fashion-MNIST (Debian's dataset-fashion-mnist) or small synthetic shapes (toy runs)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one run per seed for every arm")
    ap.add_argument("--n-eval", type=int, default=1000, help="samples and test images per FID (0 = no FID)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    ap.add_argument("--toy", action="store_true", help="tiny models, a few steps and images (the test suite's runs)")
    ap.add_argument("--measure", type=int, default=0, metavar="STEPS",
                    help="only time STEPS training steps of every arm (no results JSON) and print the budget's "
                         "estimated wall time")
    return ap


class Log:
    """Lines to stdout and to ``run_dir/log.txt`` (appended: a resumed run continues the same log)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "log.txt"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}] {msg}"
        print(line, flush=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def machine() -> dict[str, Any]:
    """Where a result was measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def cached(path: Path, fn: Callable[[], dict]) -> dict:
    """``fn()``'s result, computed once and kept in ``path`` (a JSON): a stage already done is not redone."""
    path = Path(path)
    if path.is_file():
        return json.loads(path.read_text())
    out = fn()
    write_json(path, out)
    return out


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


# ============================================================================================ data
def images(data: str, split: str, n: int | None = None, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, size, size) images in [-1, 1] and labels (N,): Fashion-MNIST (28 px; 32 = padded with black), or
    synthetic shapes (class c: a filled box whose width grows with c, at a split-dependent random place)."""
    if data == "fashion-mnist":
        from vqforge.data.fashion_mnist import load_fashion_mnist, to_model_images

        x, y = load_fashion_mnist(split)
        if n is not None:
            x, y = x[:n], y[:n]
        return to_model_images(x, size), torch.from_numpy(y)
    n = n or 256
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    y = torch.arange(n) % 10
    x = torch.full((n, 1, size, size), -1.0)
    for i in range(n):
        w = 4 + int(y[i]) * (size - 8) // 10
        h = size // 2
        r = int(torch.randint(0, size - h + 1, (1,), generator=g))
        c = int(torch.randint(0, size - w + 1, (1,), generator=g))
        x[i, :, r:r + h, c:c + w] = 1.0 - 0.1 * int(y[i])
    return x, y


def data_ready(data: str) -> str | None:
    """None when ``data`` can be read here, else why not."""
    if data == "fashion-mnist":
        from vqforge.data.fashion_mnist import available, fashion_mnist_root

        if not available():
            return f"Fashion-MNIST not found in {fashion_mnist_root()} (Debian: apt install dataset-fashion-mnist)"
    return None


def image_folder(work: Path, data: str, n: int | None, size: int) -> str:
    """The ``train.data`` of a VQGAN run: ``fashion-mnist`` for the whole train split (the trainer pads it to
    ``train.image_size``), else a folder of PNGs of the first ``n`` training images (written once)."""
    if data == "fashion-mnist" and n is None:
        return "fashion-mnist"
    out = Path(work) / "data" / f"{data}_{n or 'all'}_{size}px"
    if not (out / "DONE").is_file():
        from vqforge.imageio import save_tensor_image

        x, _ = images(data, "train", n, size)
        for i in range(len(x)):
            save_tensor_image(out / f"{i // 1000:03d}" / f"{i:06d}.png", x[i])
        (out / "DONE").write_text("ok\n")
    return str(out)


# ============================================================================================ first stages
def vqgan_overrides(toy: bool, image_size: int = 28, batch: int = 32) -> list[str]:
    """Settings every first-stage arm shares (on top of configs/bundled/fashion_vqgan.yaml)."""
    ov = [f"train.image_size={image_size}", f"model.ddconfig.resolution={image_size}", f"train.batch_size={batch}",
          "train.preview_every=0", "train.keep_every=0", "train.device=cpu"]
    if toy:
        ov += ["model.ddconfig.ch=32", "model.ddconfig.z_channels=16", "model.quantizer.embed_dim=16",
               "train.max_val_images=8", "train.val_every=0",
               "train.checkpoint_every=2", "train.log_every=1", "train.batch_size=4", "loss.disc_start=2",
               "loss.disc_ndf=8", "train.ema_decay=0"]
    return ov


def train_first_stage(run: Path, data_spec: str, overrides: list[str], steps: int, log: Log) -> dict:
    """Train (or resume) a VQGAN with vqforge's trainer up to ``steps``; returns {steps, seconds}. Wall time is
    summed over the calls that trained (``run/wall.json``)."""
    from vqforge.train.vqgan import load_config, train_vqgan

    run = Path(run)
    wall = json.loads((run / "wall.json").read_text()) if (run / "wall.json").is_file() else {"seconds": 0.0}
    resume = (run / "checkpoints" / "last.pt").is_file()
    if wall.get("step", -1) >= steps:
        return wall
    log(f"{run.name}: VQGAN to step {steps} ({'resuming' if resume else 'new'}; {' '.join(overrides)})")
    t0 = time.time()
    if resume:
        res = train_vqgan(None, run, resume=True, max_steps=steps, quiet=True)
    else:
        cfg = load_config(FASHION_VQGAN, [f"train.data={data_spec}", f"train.max_steps={steps}", *overrides])
        res = train_vqgan(cfg, run, max_steps=steps, quiet=True)
    wall = {"seconds": wall["seconds"] + time.time() - t0, "step": res.step}
    write_json(run / "wall.json", wall)
    if res.step < steps:
        raise SystemExit(f"{run}: stopped at step {res.step} ({res.stopped_by}); run again to resume")
    return wall


@torch.no_grad()
def encode(vq, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Code indices (N, h*w) of images (N, C, H, W)."""
    vq.eval()
    return torch.cat([vq.encode_to_indices(b).flatten(1) for b in x.split(batch)])


@torch.no_grad()
def decode(vq, z: torch.Tensor, grid: tuple[int, int], batch: int = 250) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] from code indices (N, h*w)."""
    return torch.cat([vq.decode_indices(b.view(-1, *grid)).clamp(-1, 1) for b in z.split(batch)])


# ============================================================================================ metrics
def to_fid_input(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28|32, ...) in [-1, 1] -> (N, 3, 32, 32): black borders, RGB (bench/quality_bundled.py's protocol)."""
    if x.shape[-1] < 32:
        p = 32 - x.shape[-1]
        x = F.pad(x, (p // 2, p - p // 2, p // 2, p - p // 2), value=-1.0)
    return x.expand(-1, 3, -1, -1)


class FID:
    """FID / KID of image sets against the first ``n`` test images (None when ``n`` is 0)."""

    def __init__(self, data: str, n: int, size: int = 28):
        self.n = n
        if not n:
            return
        from vqforge.evaluate.fid import FeatureStats, extract_features
        from vqforge.nn.inception import load_fid_inception

        self._extract, self._stats = extract_features, FeatureStats
        self.inception = load_fid_inception()
        x, self.labels = images(data, "test", n, size)
        self.test = x
        self.ref = FeatureStats.from_features(extract_features(self.inception, to_fid_input(x), 50, progress=False))

    def __call__(self, x: torch.Tensor) -> dict[str, float] | None:
        if not self.n:
            return None
        from vqforge.evaluate.samples import compare

        st = self._stats.from_features(self._extract(self.inception, to_fid_input(x), 50, progress=False))
        res = compare(st, self.ref, fid_method="eigh", pr=False)
        kid = res.get("kid_mean")
        return {"fid": float(res["fid"]), "kid": None if kid is None else float(kid), "n": int(len(x))}


@torch.no_grad()
def reconstruction(vq, x: torch.Tensor, fid: FID) -> dict[str, Any]:
    """rFID, PSNR, codebook usage and perplexity of a first stage on test images ``x``."""
    from vqforge.metrics import psnr

    z = encode(vq, x)
    grid = tuple(vq.encode_to_indices(x[:1]).shape[1:])
    xr = decode(vq, z, grid)
    counts = torch.bincount(z.flatten(), minlength=vq.n_codes).float()
    p = counts / counts.sum()
    perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    f = fid(xr)
    return {"rfid": f["fid"] if f else None, "psnr": float(psnr(xr, x).mean()), "codes_used": int((counts > 0).sum()),
            "n_codes": int(vq.n_codes), "usage": float((counts > 0).float().mean()), "perplexity": perplexity,
            "n": int(len(x)), "grid": list(grid)}


def class_match(x: torch.Tensor, classes: torch.Tensor) -> float | None:
    """Fraction of samples (N, 1, 28|32, ...) the bundled classifier puts in their requested class."""
    from vqforge.evaluate.classifier import DEFAULT_WEIGHTS, as_classifier_input, class_match_rate, load_classifier

    if not DEFAULT_WEIGHTS.is_file():
        return None
    clf, _ = load_classifier()
    if x.shape[-1] == 32:
        x = x[..., 2:30, 2:30]  # the padding back off
    return class_match_rate(clf, as_classifier_input(x), classes)


# ============================================================================================ second stages
class ClassGPT(nn.Module):
    """vqforge's GPT over [class token, z_0 .. z_{N-1}] (class ids after the image codes); logits restricted to the
    image codes. ``loss`` is the mean NLL in nats per image token."""

    def __init__(self, n_codes: int, n_classes: int, n_tokens: int, n_layer: int, n_head: int, n_embd: int,
                 dropout: float = 0.0):
        super().__init__()
        from vqforge.models.gpt import GPT, GPTConfig

        self.n_codes, self.n_tokens = n_codes, n_tokens
        self.gpt = GPT(GPTConfig(vocab_size=n_codes + n_classes, block_size=n_tokens, n_layer=n_layer, n_head=n_head,
                                 n_embd=n_embd, embd_pdrop=dropout, resid_pdrop=dropout, attn_pdrop=dropout))

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW's groups as vqforge's transformer trainer makes them (Linear weights decay, the rest not)."""
        from vqforge.train.transformer import param_groups

        return param_groups(self.gpt, weight_decay)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        idx = torch.cat((self.n_codes + y[:, None], z[:, :-1]), dim=1)  # (B, N)
        logits = self.gpt(idx)[..., :self.n_codes]  # (B, N, n_codes)
        return F.cross_entropy(logits.float().reshape(-1, self.n_codes), z.reshape(-1))

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator, temperature: float = 1.0,
               top_k: int | None = None) -> torch.Tensor:
        """Codes (B, N) drawn with vqforge's cached decoding (exact fp32 path)."""
        from vqforge.sampling.generate import EXACT, sample_tokens
        from vqforge.sampling.processors import SamplingSettings

        self.eval()
        return sample_tokens(self.gpt, (self.n_codes + y)[:, None], self.n_tokens,
                             SamplingSettings(temperature=temperature, top_k=top_k), generator,
                             n_vocab=self.n_codes, decoding=EXACT)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@dataclass(frozen=True)
class ARBudget:
    """How an autoregressive second stage trains: steps, batch, AdamW's peak lr (linear warmup, cosine to 10%),
    weight decay, and how often the held-out NLL is measured (on ``val_images`` test images)."""

    steps: int = 5000
    batch: int = 64
    lr: float = 6e-4
    warmup: int = 300
    weight_decay: float = 0.01
    eval_every: int = 250
    val_images: int = 2000


def lr_at(step: int, b: ARBudget) -> float:
    if step < b.warmup:
        return b.lr * (step + 1) / b.warmup
    t = min(1.0, (step - b.warmup) / max(1, b.steps - b.warmup))
    return b.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def held_out_nll(model: nn.Module, z: torch.Tensor, y: torch.Tensor, batch: int = 250) -> float:
    """Mean NLL (nats per image token) of ``model`` on codes ``z`` (N, T) with labels ``y``."""
    model.eval()
    total = sum(float(model.loss(zb, yb)) * len(zb) for zb, yb in zip(z.split(batch), y.split(batch)))
    model.train()
    return total / len(z)


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW's parameter groups: a model's own split where it has one (:meth:`ClassGPT.param_groups`, the
    trainer's), else matrices other than embeddings decay and the rest does not (PixelSNAIL)."""
    if hasattr(model, "param_groups"):
        return model.param_groups(weight_decay)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "emb" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "emb" not in n)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def resume(ck: Path, model: nn.Module, opt: torch.optim.Optimizer) -> dict | None:
    """The training state (step, seconds, curve) that :func:`checkpoint` saved in ``ck``, with ``model`` and
    ``opt`` restored from it; None when there is no checkpoint yet (a fresh run)."""
    if not Path(ck).is_file():
        return None
    saved = torch.load(ck, weights_only=True)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    return saved["state"]


def checkpoint(ck: Path, model: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    """Save ``model``, ``opt`` and the training ``state`` in ``ck`` (atomically), for :func:`resume`."""
    save_torch(ck, {"model": model.state_dict(), "opt": opt.state_dict(), "state": state})


def train_ar(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
             budget: ARBudget, run: Path, seed: int, log: Log, stop_at: int | None = None) -> dict:
    """Train ``model`` (any module with ``loss(z, y)``) with AdamW on codes ``train`` = (z (N, T), y (N,)); every
    ``eval_every`` steps: held-out NLL on ``val``, a checkpoint (model, optimiser, step, wall time, curve) in
    ``run/ckpt.pt``. Batches depend only on (seed, step), so a resumed run draws what an uninterrupted one would.
    ``stop_at``: train only up to that step (a later call continues). Returns {curve: [{step, seconds, nll}],
    seconds, steps, params}."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    ck = run / "ckpt.pt"
    opt = torch.optim.AdamW(decay_groups(model, budget.weight_decay), lr=budget.lr, betas=(0.9, 0.95))
    state = resume(ck, model, opt)
    if state is not None:
        log(f"{run.name}: resuming at step {state['step']}")
    else:
        state = {"step": 0, "seconds": 0.0, "curve": []}
        seed_all(seed)
    end = min(budget.steps, stop_at or budget.steps)
    zv, yv = val[0][:budget.val_images], val[1][:budget.val_images]
    if not state["curve"]:
        state["curve"].append({"step": 0, "seconds": 0.0, "nll": held_out_nll(model, zv, yv)})
    z, y = train
    model.train()
    t_last = time.perf_counter()
    while state["step"] < end:
        step = state["step"]
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        b = torch.randint(0, len(z), (budget.batch,), generator=g)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, budget)
        loss = model.loss(z[b], y[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["step"] = step + 1
        if state["step"] % budget.eval_every == 0 or state["step"] == end:
            now = time.perf_counter()
            state["seconds"] += now - t_last  # training time only: evaluation and saving excluded
            nll = held_out_nll(model, zv, yv)
            state["curve"].append({"step": state["step"], "seconds": round(state["seconds"], 2), "nll": nll,
                                   "train_loss": float(loss.detach())})
            checkpoint(ck, model, opt, state)
            log(f"{run.name}: step {state['step']}/{budget.steps}, held-out NLL {nll:.4f} nats/token, "
                f"{state['seconds']:.0f} s")
            t_last = time.perf_counter()
    return {"curve": state["curve"], "seconds": state["seconds"], "steps": state["step"], "params": n_params(model)}


def measure_steps(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], budget: ARBudget, steps: int) -> float:
    """CPU seconds per training step of ``model`` (median after one warm-up step; nothing saved). With one thread
    this is the wall time per step of a machine that runs nothing else, whatever else this one runs."""
    opt = torch.optim.AdamW(model.parameters(), lr=budget.lr)
    z, y = train
    times = []
    for i in range(steps + 1):
        b = torch.randint(0, len(z), (budget.batch,))
        t = time.process_time()
        loss = model.loss(z[b], y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.process_time() - t)
    return float(np.median(times))


# ============================================================================================ results
def spread(values: list[float | None]) -> dict[str, Any]:
    """Mean, min, max and the values of one metric over seeds (None values left out)."""
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return {"mean": None, "min": None, "max": None, "values": [], "n": 0}
    return {"mean": float(np.mean(v)), "min": min(v), "max": max(v), "values": v, "n": len(v)}


def write_results(path: str | Path, result: dict) -> None:
    """The experiment's results JSON (what bench/paper/render.py reads)."""
    result = {**result, "machine": machine()}
    write_json(Path(path), result)
    print(f"wrote {path}", flush=True)


def compare_verdict(ours: float | None, theirs: float | None, better: str, margin: float,
                    spread_ours: float = 0.0, spread_theirs: float = 0.0) -> str:
    """reproduced (the paper's preferred arm ``ours`` wins by more than ``margin`` plus the seed spreads),
    reversed (it loses by that much), or not reproduced (within the noise). ``better``: "lower" or "higher"."""
    if ours is None or theirs is None:
        return "not measured"
    d = (theirs - ours) if better == "lower" else (ours - theirs)
    noise = margin + spread_ours + spread_theirs
    if d > noise:
        return "reproduced"
    if d < -noise:
        return "reversed at this scale"
    return "not reproduced (within the seed spread)"


# ============================================================================================ a whole pipeline
def perceptual_choice() -> tuple[str, str]:
    """(perceptual kind for the VQGAN arms, why): the paper's LPIPS (VGG16) when its weights are here, else the
    offline Inception features (which flatter FID: the same network measures it)."""
    from vqforge.losses.perceptual import build_perceptual

    try:
        build_perceptual("lpips-vgg16")
        return "lpips-vgg16", "the paper's LPIPS (VGG16 ImageNet weights and LPIPS heads found)"
    except Exception as e:  # noqa: BLE001 - any missing file means: not here
        return "inception", (f"LPIPS's VGG16 weights are not here ({str(e).splitlines()[0][:120]}); the offline "
                             f"Inception perceptual term stands in (it flatters FID: the same network measures it)")


def gpt_shape(toy: bool) -> tuple[int, int, int]:
    """(layers, heads, width) of every second-stage transformer (the bundled fashion model's shape)."""
    return (2, 2, 32) if toy else (6, 8, 256)


def stage_pair(work: Path, name: str, seed: int, args, overrides: list[str], size: int, vq_steps: int,
               budget: ARBudget, fid: FID, log: Log) -> dict:
    """A VQGAN arm and the class-conditional transformer trained on its codes: reconstruction metrics, held-out
    NLL, sample FID / class-match and sampling time per image. Each part is cached in ``work/NAME_seedS``."""
    from vqforge import load

    run = Path(work) / f"{name}_seed{seed}"
    n_train = 256 if args.toy else None
    spec = image_folder(Path(work).parent, args.data, n_train, size)
    wall = train_first_stage(run / "vqgan", spec, [*overrides, f"train.seed={seed}"], vq_steps, log)
    vq = load(run / "vqgan").eval()
    x_te, y_te = images(args.data, "test", 64 if args.toy else None, size)
    n_rec = max(fid.n, 16) if args.toy else max(fid.n, 1000)
    recon = cached(run / "recon.json", lambda: reconstruction(vq, x_te[:n_rec], fid))

    def second() -> dict:
        x_tr, y_tr = images(args.data, "train", n_train, size)
        z_tr, z_te = encode(vq, x_tr), encode(vq, x_te)
        grid = tuple(recon["grid"])
        seed_all(seed)
        m = ClassGPT(vq.n_codes, 10, grid[0] * grid[1], *gpt_shape(args.toy))
        rec = train_ar(m, (z_tr, y_tr), (z_te, y_te), budget, run / "gpt", seed, log)
        rec["test_nll"] = held_out_nll(m, z_te, y_te)
        rec["seq_len"] = grid[0] * grid[1]
        if fid.n:
            labels = torch.arange(fid.n) % 10
            gen = torch.Generator().manual_seed(seed)
            t = time.perf_counter()
            x = torch.cat([decode(vq, m.sample(b, gen), grid) for b in labels.split(100)])
            rec["sample_seconds_per_image"] = (time.perf_counter() - t) / fid.n
            rec["samples"] = fid(x)
            rec["class_match"] = class_match(x, labels)
            from vqforge.imageio import save_grid

            save_grid(run / "samples.png", x[:100], nrow=10)
        return rec

    return {"vqgan_seconds": wall["seconds"], "recon": recon, **cached(run / "second.json", second)}


def arm_row(name: str, runs: list[dict], seeds: list[int], **extra) -> dict:
    """One arm's table row: every metric as mean / min / max over seeds."""
    def get(r, *path):
        for p in path:
            r = (r or {}).get(p)
        return r

    return {"arm": name, "seeds": list(seeds), **extra,
            "rfid": spread([get(r, "recon", "rfid") for r in runs]),
            "psnr": spread([get(r, "recon", "psnr") for r in runs]),
            "usage": spread([get(r, "recon", "usage") for r in runs]),
            "perplexity": spread([get(r, "recon", "perplexity") for r in runs]),
            "test_nll": spread([r.get("test_nll") for r in runs]),
            "fid": spread([get(r, "samples", "fid") for r in runs]),
            "class_match": spread([r.get("class_match") for r in runs]),
            "seq_len": runs[0].get("seq_len"),
            "sample_seconds_per_image": spread([r.get("sample_seconds_per_image") for r in runs]),
            "vqgan_seconds": spread([r.get("vqgan_seconds") for r in runs]),
            "gpt_seconds": spread([r.get("seconds") for r in runs]),
            "curves": [r.get("curve") for r in runs]}


def measure_vqgan(spec: str, overrides: list[str], steps: int) -> float:
    """CPU seconds per VQGAN training step with ``overrides`` (GAN steps included; median after the first), in a
    throw-away run directory: the process time of the trainer's ``train_step`` (forward and backward of both
    halves; the optimiser steps after it are not counted)."""
    import tempfile

    from vqforge.train import vqgan as V
    from vqforge.train.vqgan import load_config, train_vqgan

    times: list[float] = []
    plain = V.VQGANStage.train_step

    def timed(self, ctx, step):
        t = time.process_time()
        out = plain(self, ctx, step)
        times.append(time.process_time() - t)
        return out

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(FASHION_VQGAN, [f"train.data={spec}", f"train.max_steps={steps + 1}", *overrides,
                                          "train.log_every=1", "train.val_every=0", "train.checkpoint_every=0",
                                          "loss.disc_start=0"])
        V.VQGANStage.train_step = timed
        try:
            train_vqgan(cfg, Path(tmp) / "run", quiet=True)
        finally:
            V.VQGANStage.train_step = plain
    return float(np.median(times[1:])) if len(times) > 1 else float("nan")


def measure_pair(name: str, spec: str, overrides: list[str], vq_steps: int, budget: ARBudget, n_tokens: int,
                 n_codes: int, toy: bool, steps: int, seeds: int) -> dict:
    """Measured seconds per step of an arm's VQGAN and transformer, and the budget's estimated hours."""
    s_vq = measure_vqgan(spec, overrides, steps)
    m = ClassGPT(n_codes, 10, n_tokens, *gpt_shape(toy))
    z = torch.randint(0, n_codes, (512, n_tokens))
    s_ar = measure_steps(m, (z, torch.randint(0, 10, (512,))), budget, steps)
    hours = (s_vq * vq_steps + s_ar * budget.steps) * seeds / 3600
    print(f"{name}: VQGAN {s_vq:.3f} CPU s/step, transformer ({n_tokens} tokens) {s_ar:.3f} CPU s/step; "
          f"{vq_steps} + {budget.steps} steps x {seeds} seeds = {hours:.2f} h", flush=True)
    return {"arm": name, "cost": f"VQGAN {s_vq:.2f} s/step, transformer {s_ar:.2f} s/step", "hours": hours}


def write_budget(args, name: str, experiment: str, arms: list[dict]) -> None:
    """The measured per-step costs of ``--measure`` (``[{arm, cost, hours}]``) beside the results JSON, for the
    header of docs/paper.md."""
    path = Path(args.json).with_name(f"{name}_budget.json")
    write_json(path, {"experiment": experiment, "arms": arms, "measured_steps": args.measure, "seeds": args.seeds,
                      "machine": machine()})
    print(f"wrote {path}", flush=True)
