"""The parts of ``vqforge demo``: each takes the run's :class:`Context` and models, writes its PNGs and returns a
:class:`~vqforge.demo.page.Section` with its figures, settings and numbers."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.images import Crop, load_image_tensor, plan_crop
from ..imageio import pil_to_tensor, read_image, save_grid
from ..labels import label_colours
from ..metrics import psnr, ssim
from ..sampling.defaults import settings_for
from ..sampling.job import SampleResult, run_job
from ..sampling.request import Completion, SampleRequest
from .page import Figure, Section


def say(msg: str) -> None:
    print(f"vqforge demo: {msg}", file=sys.stderr, flush=True)


@dataclass
class Context:
    """Where the demo writes, how much it does, its seed and whether it shows progress."""

    out: Path
    sizes: object
    seed: int
    progress: bool
    assets: Path

    def png(self, name: str, images: torch.Tensor, nrow: int | None = None) -> tuple[str, int]:
        """Write (N, C, H, W) images in [-1, 1] as ``images/NAME`` (one grid); returns its relative path and width."""
        path = save_grid(self.out / "images" / name, images, nrow=nrow)
        return path.relative_to(self.out).as_posix(), Image.open(path).size[0]

    def bar(self, desc: str):
        """A sampling job's progress callback (a tqdm bar over its tokens), or None."""
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        state: dict = {}

        def hook(step) -> None:
            if "bar" not in state:
                state["bar"] = tqdm(total=step.total, desc=f"  {desc}", unit="tok", leave=False, file=sys.stderr)
            state["bar"].update(step.done - state["bar"].n)
            if step.done == step.total:
                state["bar"].close()

        return hook

    def sample(self, desc: str, model, inputs, count: int, offset: int, **request) -> tuple[SampleResult, float]:
        """The sampling job of ``count`` images from ``inputs`` (model inputs (1, ...), in turn) in one batch, seeded
        by the demo's seed + ``offset``, the model card's settings unless ``request`` says otherwise; and its
        seconds."""
        t = time.perf_counter()
        result = run_job(SampleRequest(model, count=count, inputs=tuple(inputs), seed=self.seed + offset,
                                       batch_size=count, **request), self.bar(desc))
        return result, time.perf_counter() - t


def _fashion_test(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` Fashion-MNIST test images (1, 28, 28) in [-1, 1] and their labels (bundled subset)."""
    data = np.load(Path(__file__).resolve().parents[1] / "demo_assets" / "fashion_mnist_test_1000.npz")
    x = torch.from_numpy(data["images"][:n].astype(np.float32)).div(127.5).sub(1.0)[:, None]
    return x, torch.from_numpy(data["labels"][:n].astype(np.int64))


def _usage(vq, batches) -> float:
    codes = torch.cat([vq.encode_to_indices(x).flatten() for x in batches])
    return codes.unique().numel() / vq.n_codes


# ---------------------------------------------------------------------------------------------- the models
#: where the paper's own models are listed (vqforge loads them unchanged: `vqforge models --available`)
ORIGINAL_MODELS = "https://github.com/CompVis/taming-transformers#overview-of-pretrained-models"


def _params(module) -> str:
    n = sum(p.numel() for p in module.parameters()) if module is not None else 0
    return f"{n / 1e6:.1f} M" if n >= 1e5 else f"{n / 1e3:.0f} k"


def _cpu_time(card: dict) -> str:
    """The card's total training wall time ("...; total 253 min") as hours, or what the card says."""
    import re

    text = str(card.get("wall_time", ""))
    found = re.search(r"total\s+([\d.]+)\s*min", text)
    return f"{float(found.group(1)) / 60:.1f} h" if found else (text or "not recorded")


def models_section(ctx: Context, fashion, landscapes, names: tuple[str, str]) -> Section:
    """What the two models on this page are: size, data, training time, and where the paper's real ones are."""
    import html
    import os

    docs = Path(__file__).resolve().parents[3] / "docs" / "models.md"  # in a checkout: the page links it
    where = (f"<a href='{html.escape(os.path.relpath(docs, ctx.out.resolve()))}#limits'>docs/models.md, Limits</a>"
             if docs.is_file() else "docs/models.md (Limits) in the vqforge sources")
    rows = []
    for name, model in zip(names, (fashion, landscapes)):
        card = getattr(model, "card", None) or {}
        stages = f"transformer {_params(model.transformer)}, first stage {_params(model.first_stage)}"
        if model.cond_stage is not None:
            stages += f", condition stage {_params(model.cond_stage)}"
        cells = (f"<code>{html.escape(name)}</code>", html.escape(str(card.get("summary", model.mode))),
                 f"{stages} parameters; trained at {model.trained_hw[0]}x{model.trained_hw[1]} px",
                 html.escape(str(card.get("trained_on", "not recorded"))),
                 f"{_cpu_time(card)} on {html.escape(str(card.get('machine', 'a CPU')).split(',')[0])}")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = ("<table class='models'><tr><th>model</th><th>what</th><th>size</th><th>trained on</th>"
             "<th>training time</th></tr>" + "".join(rows) + "</table>")
    text = ("Two small models that ship with vqforge, trained by its own commands on a CPU: every image below comes "
            "from them, so expect small, blurry pictures; what they cannot do is in " + where + ". They are not the "
            "paper's models, which are far larger and were trained on GPUs on large datasets; vqforge loads those "
            f"unchanged (<a href='{ORIGINAL_MODELS}'>the original's pretrained models</a>; "
            "<code>vqforge models --available</code> lists them, <code>--model taming/NAME</code> uses one)." + table)
    return Section("The models", text)


# ---------------------------------------------------------------------------------------------- 1. reconstructions
@torch.inference_mode()
def reconstructions(ctx: Context, landscapes, fashion) -> Section:
    vq = landscapes.first_stage
    f = vq.downsample_factor
    photos = sorted((ctx.assets / "photos").iterdir())
    by_source = [sorted(p for p in photos if p.name.startswith(s)) for s in ("sflckr", "coco", "drin")]
    files = [p for trio in zip(*by_source) for p in trio][:max(ctx.sizes.eval_photos, ctx.sizes.photos)]
    shown = files[:ctx.sizes.photos]
    sec = Section("1. Reconstructions", "Held-out photos (never seen in training) through the <code>landscapes</code> "
                  "first stage (an f8 VQGAN: every 8x8 patch becomes one of its codebook entries), and Fashion-MNIST "
                  "test images through the <code>fashion</code> first stage (f4). Left: input, right: reconstruction.")
    all_x = [load_image_tensor(p, multiple_of=f)[None] for p in files]
    sec.numbers[f"landscapes codebook usage ({len(files)} held-out photos)"] = (
        f"{_usage(vq, all_x):.1%} of {vq.n_codes} codes")
    ps_all = []
    for p, x in zip(files, all_x):
        rec = vq(x).reconstruction.clamp(-1, 1)
        a, b = float(psnr(rec, x)), float(ssim(rec, x))
        ps_all.append((a, b))
        if p in shown:
            src, w = ctx.png(f"recon_{p.stem}.png", torch.cat([x, rec]), nrow=2)
            sec.figures.append(Figure(src, p.name, numbers={"PSNR": f"{a:.2f} dB", "SSIM": f"{b:.3f}"},
                                      settings={"size": f"{x.shape[3]}x{x.shape[2]}"}, width=w, scale=1.5))
    sec.numbers[f"landscapes mean PSNR / SSIM ({len(files)} held-out photos)"] = (
        f"{np.mean([a for a, _ in ps_all]):.2f} dB / {np.mean([b for _, b in ps_all]):.3f}")
    fv = fashion.first_stage
    x, _ = _fashion_test(ctx.sizes.fashion_eval)
    rec = torch.cat([fv(b).reconstruction.clamp(-1, 1) for b in x.split(250)])
    sec.numbers[f"fashion mean PSNR ({len(x)} test images)"] = f"{float(psnr(rec, x).mean()):.2f} dB"
    sec.numbers[f"fashion codebook usage ({len(x)} test images)"] = f"{_usage(fv, x.split(250)):.1%} of {fv.n_codes} codes"
    n = ctx.sizes.fashion_recon
    src, w = ctx.png("recon_fashion.png", torch.cat([x[:n], rec[:n]]), nrow=n)
    sec.figures.append(Figure(src, "Fashion-MNIST test images (top) and reconstructions (bottom)", width=w, scale=2))
    return sec


# ---------------------------------------------------------------------------------------------- 2. class samples
@torch.inference_mode()
def class_samples(ctx: Context, fashion) -> Section:
    from ..evaluate.classifier import class_match_rate, load_classifier

    classifier, card = load_classifier()
    names = list(fashion.config.cond.names)
    n_classes = fashion.config.cond.n_classes
    k = ctx.sizes.per_class
    labels = torch.arange(n_classes).repeat_interleave(k)
    sec = Section("2. Class-conditional samples", "New images from the <code>fashion</code> transformer, one row "
                  "per class (top to bottom: " + ", ".join(names or map(str, range(n_classes))) + "), at three "
                  "classifier-free guidance scales: the logits are pushed away from those of the NULL class. The "
                  f"class-match rate is how often a small CNN classifier (test accuracy {card.get('test_accuracy', '?')}) "
                  "sees the requested class in a sample.")
    for i, cfg in enumerate(ctx.sizes.cfg_scales):
        result, dt = ctx.sample(f"fashion cfg {cfg:g}", fashion, labels.view(-1, 1), len(labels), i, cfg=cfg)
        images, lay, settings = result.images, result.plan.layout, result.plan.settings
        rate = class_match_rate(classifier, images, labels)
        src, w = ctx.png(f"fashion_cfg{cfg:g}.png", images, nrow=k)
        sec.figures.append(Figure(src, f"guidance scale {cfg:g}", width=w, scale=2,
                                  numbers={"class-match rate": f"{rate:.1%}", "time": f"{dt:.1f} s",
                                           "tokens/s": f"{len(labels) * lay.n_tokens / dt:.0f}"},
                                  settings={"top-k": settings.top_k, "temperature": settings.temperature,
                                            "cfg": cfg, "seed": ctx.seed + i, "samples": len(labels)}))
        sec.numbers[f"class-match rate, cfg {cfg:g}"] = f"{rate:.1%}"
    return sec


# ---------------------------------------------------------------------------------------------- 3. landscapes
def _map_crop(path: Path, short: int, f: int, square: bool = False) -> tuple[torch.Tensor, Crop]:
    """A label map (H, W) int64: the shorter side resized to ``short`` (nearest), centre-cropped to multiples
    of ``f`` (to a ``short`` square when ``square``); and the crop, to cut its photo alike."""
    im = read_image(path, mode=None)
    crop = plan_crop(im.size, short if square else None, resize=short, source=path, multiple_of=f)
    return torch.from_numpy(np.asarray(crop.apply(im, Image.NEAREST)).astype(np.int64)), crop


def _photo_crop(path: Path, crop: Crop) -> torch.Tensor:
    """The photo cut as its map was (:func:`_map_crop`): (1, 3, H, W)."""
    return pil_to_tensor(crop.apply(read_image(path)))[None]


def _colorize(labels: torch.Tensor, model) -> torch.Tensor:
    """A label map (H, W) as an image (1, 3, H, W) in [-1, 1], each label in its natural colour
    (:func:`vqforge.labels.label_colours`, the web app's palette)."""
    colours = torch.from_numpy(label_colours(model.config.cond.n_labels, _names(model))).float() / 127.5 - 1
    return colours[labels.long()].permute(2, 0, 1)[None]


def _names(model) -> list[str]:
    return [str(n) for n in (getattr(model, "card", None) or {}).get("label_names") or []]


def _legend(labels: torch.Tensor, model) -> list[tuple[str, str]]:
    """(name, colour) of every label the map (H, W) shows, the largest first: the figure's legend."""
    names = _names(model)
    colours = label_colours(model.config.cond.n_labels, names)
    ids, counts = labels.flatten().unique(return_counts=True)
    order = [int(i) for _, i in sorted(zip(counts.tolist(), ids.tolist()), reverse=True)]
    return [(names[i] if i < len(names) else f"label {i}", "#%02x%02x%02x" % tuple(int(v) for v in colours[i]))
            for i in order]


def _synthesise(ctx: Context, model, labels: torch.Tensor, n: int, offset: int, desc: str):
    """``n`` images from the label map ``labels`` (H, W) at its size: (images, layout, seconds)."""
    c = model.condition.build_input(raw=labels[None])  # (1, labels, H, W)
    result, dt = ctx.sample(desc, model, [c], n, offset, size=tuple(labels.shape))
    return result.images, result.plan.layout, dt


def landscapes(ctx: Context, model) -> Section:
    f = model.first_stage.downsample_factor
    trained = model.trained_hw
    maps = sorted((ctx.assets / "segmentations").iterdir())[:ctx.sizes.maps]
    sec = Section("3. Landscapes from segmentation maps", "Held-out S-FLCKR segmentation maps (never seen in "
                  f"training) turned into landscapes by the <code>landscapes</code> transformer: first at its trained "
                  f"size ({trained[1]}x{trained[0]} px, {trained[0] // f}x{trained[1] // f} tokens), then far larger: "
                  "the sliding window predicts each token from a trained-size window of its neighbours and the "
                  "condition under it (that window's crop of the map, encoded alone as in training), so one model "
                  "synthesises any size. Beside each: the map (colours = labels, named in its legend) "
                  "and the held-out photo it was drawn from.")
    for i, mp in enumerate(maps):
        photo = ctx.assets / "photos" / (mp.stem + ".jpg")
        small, crop = _map_crop(mp, trained[0], f, square=True)
        images, lay, dt = _synthesise(ctx, model, small, 2, 100 + i, f"{mp.stem[:16]} {trained[0]}px")
        ref = [_colorize(small, model)] + ([_photo_crop(photo, crop)] if photo.is_file() else [])
        src, w = ctx.png(f"land_{i}_trained.png", torch.cat([*ref, images]), nrow=len(ref) + 2)
        sec.figures.append(Figure(src, f"{mp.stem}: map, photo, 2 samples at {trained[1]}x{trained[0]}", width=w,
                                  scale=2, numbers={"time": f"{dt:.1f} s"}, legend=_legend(small, model),
                                  settings={"size": f"{lay.image_hw[1]}x{lay.image_hw[0]}", "seed": ctx.seed + 100 + i,
                                            "top-k": settings_for(model.card).top_k}))
        for j, side in enumerate(ctx.sizes.large_sides):
            big, crop = _map_crop(mp, side, f)
            images, lay, dt = _synthesise(ctx, model, big, 1, 200 + 10 * i + j, f"{mp.stem[:16]} {side}px")
            area = lay.image_hw[0] * lay.image_hw[1] / (trained[0] * trained[1])
            ref = [_colorize(big, model)] + ([_photo_crop(photo, crop)] if photo.is_file() else [])
            src, w = ctx.png(f"land_{i}_{side}.png", torch.cat([*ref, images]), nrow=len(ref) + 1)
            sec.figures.append(Figure(
                src, f"{mp.stem}: {lay.image_hw[1]}x{lay.image_hw[0]} ({area:.1f}x the trained area), sliding window",
                width=w, scale=1.5, legend=_legend(big, model), numbers={"time": f"{dt:.1f} s",
                                             "tokens": f"{lay.n_tokens} ({lay.grid_hw[1]}x{lay.grid_hw[0]})"},
                settings={"window": f"{lay.window_hw[1]}x{lay.window_hw[0]} tokens",
                          "condition encoding": f"{lay.cond_encoding} (--cond-encoding)",
                          "seed": ctx.seed + 200 + 10 * i + j}))
    return sec


# ---------------------------------------------------------------------------------------------- 4. completion
@torch.inference_mode()
def completion(ctx: Context, model) -> Section:
    f = model.first_stage.downsample_factor
    side = ctx.sizes.completion_side
    mp = sorted((ctx.assets / "segmentations").iterdir())[0]
    labels, crop = _map_crop(mp, side, f, square=True)
    x = _photo_crop(ctx.assets / "photos" / (mp.stem + ".jpg"), crop)
    mask = torch.zeros(1, 1, side, side)
    mask[..., side // 4: side, side // 2:] = 1.0  # resample the lower right: the map says what goes there
    c = model.condition.build_input(raw=labels[None])  # (1, labels, H, W)
    result, dt = ctx.sample("completion", model, [c], 2, 300, completion=Completion.of(x[0], mask[0, 0]))
    done = result.images
    shown = x.clone()
    shown[:, :, mask[0, 0] > 0] = shown[:, :, mask[0, 0] > 0] * 0.3 - 0.5  # darken the masked part
    src, w = ctx.png("completion.png", torch.cat([_colorize(labels, model), x, shown, done]), nrow=5)
    sec = Section("4. Completion", "A held-out photo with its lower right part masked; the transformer resamples "
                  "the masked tokens given the rest of the image and the segmentation map (two seeds), and the "
                  "photo's own pixels are put back outside the mask, blended over a seam of "
                  f"{f // 2} px inside it (<code>vqforge complete --no-paste-back</code> shows the raw decode, "
                  "whose kept part is the first stage's reconstruction). "
                  "Left to right: the map, photo, masked input, completions.")
    sec.figures.append(Figure(src, f"{mp.stem}, {side}x{side}", width=w, scale=2, legend=_legend(labels, model),
                              numbers={"time": f"{dt:.1f} s", "tokens resampled": result.plan.n_steps},
                              settings={"seed": ctx.seed + 300, "top-k": result.plan.settings.top_k,
                                        "paste-back seam": f"{f // 2} px"}))
    return sec


# ---------------------------------------------------------------------------------------------- 5. FID / KID
@torch.inference_mode()
def sample_quality(ctx: Context, fashion) -> Section:
    from ..evaluate.fid import extract_features, fid_from_features, kid
    from ..io import VQForgeError
    from ..nn.inception import load_fid_inception

    n = ctx.sizes.fid_samples
    cfg = ctx.sizes.fid_cfg
    sec = Section("5. Sample quality", f"FID and KID of {n} class-conditional <code>fashion</code> samples (classes "
                  f"in equal shares, guidance {cfg:g}) against the first {n} Fashion-MNIST test images, with the "
                  "standard FID Inception network. FID from a few hundred images is biased upwards (compare only at "
                  "equal counts); KID is unbiased. docs/benchmarks.md has the 1000-image protocol.")
    try:
        inception = load_fid_inception()
    except VQForgeError as e:
        sec.note = f"skipped: {e}"
        return sec
    real, _ = _fashion_test(n)
    labels = torch.arange(n) % fashion.config.cond.n_classes
    fake, _ = ctx.sample("fid samples", fashion, labels.view(-1, 1), n, 400, cfg=cfg)
    fr = extract_features(inception, real.expand(-1, 3, -1, -1), progress=ctx.progress, desc="  inception (test)")
    ff = extract_features(inception, fake.images.expand(-1, 3, -1, -1), progress=ctx.progress,
                          desc="  inception (samples)")
    k_mean, k_std, m = kid(fr, ff, subset_size=min(1000, n))
    # the spread over subsets exists only when a subset is smaller than the sets (else every subset is all of them)
    spread = f" ± {k_std:.4f} (over subsets of {m})" if m < min(len(fr), len(ff)) else f" (one subset: all {m} images)"
    sec.numbers.update({"samples / reference images": f"{n} / {n}", f"FID (cfg {cfg:g})": f"{fid_from_features(fr, ff):.1f}",
                        f"KID (cfg {cfg:g})": f"{k_mean:.4f}{spread}"})
    return sec
