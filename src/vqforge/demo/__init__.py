"""``vqforge demo`` / ``make demo``: the whole paper on the bundled models, in minutes on a CPU.

Writes ``OUT/index.html`` (viewable offline) with every input and output, its settings, numbers and timing:

1. reconstructions of held-out photos by the ``landscapes`` first stage (PSNR / SSIM, codebook usage) and of
   Fashion-MNIST test images by the ``fashion`` first stage;
2. class-conditional ``fashion`` samples per class without and with classifier-free guidance, with the rate at
   which a classifier recognises the requested class;
3. landscapes synthesised from held-out segmentation maps at the trained size and, through the sliding window,
   at several times its area;
4. a photo completed under a mask;
5. FID / KID of class-conditional samples against the Fashion-MNIST test split (sample count stated).

``--quick`` shrinks every part (used by the tests). The models are the bundled ones (``vqforge models``); see
``docs/models.md`` for how they were trained and ``bench/retrain_bundled.sh`` to reproduce them.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ASSETS = Path(__file__).resolve().parents[1] / "demo_assets"


@dataclass(frozen=True)
class DemoSizes:
    """How much the demo does (``full`` for ``make demo``, ``quick`` for tests)."""

    photos: int = 6  # held-out photos shown reconstructed
    eval_photos: int = 18  # held-out photos measured (PSNR / SSIM / codebook usage)
    fashion_recon: int = 16  # Fashion-MNIST test images shown reconstructed
    fashion_eval: int = 1000  # Fashion-MNIST test images measured
    per_class: int = 8  # samples per class and guidance scale
    cfg_scales: tuple[float, ...] = (0.0, 2.0, 4.0)
    maps: int = 4  # held-out segmentation maps synthesised from
    large_sides: tuple[int, ...] = (128, 160)  # shorter sides of the sliding-window landscapes (trained: 64)
    completion_side: int = 128
    fid_samples: int = 200  # class-conditional samples (and test images) for FID / KID (Inception: ~2/3 of the time)
    fid_cfg: float = 2.0

    @classmethod
    def quick(cls) -> "DemoSizes":
        return cls(photos=2, eval_photos=3, fashion_recon=4, fashion_eval=100, per_class=1, cfg_scales=(0.0, 2.0), maps=1, large_sides=(96,),
                   completion_side=64, fid_samples=20)


def run_demo(out: str | Path = "demo-out", sizes: DemoSizes = DemoSizes(), seed: int = 0, progress: bool = True,
             fashion: str = "fashion", landscapes: str = "landscapes") -> Path:
    """Run every part of the demo on the models ``fashion`` and ``landscapes`` and write ``out/index.html``."""
    from .. import load
    from .page import write_page
    from . import parts

    out = Path(out)
    t0 = time.perf_counter()
    ctx = parts.Context(out=out, sizes=sizes, seed=seed, progress=progress, assets=ASSETS)
    say = parts.say if progress else (lambda *_: None)
    say(f"loading the bundled models '{fashion}' and '{landscapes}'")
    fm, lm = load(fashion), load(landscapes)
    sections = [parts.models_section(ctx, fm, lm, (fashion, landscapes))]
    for title, fn, args in (("reconstructions", parts.reconstructions, (lm, fm)),
                            ("class-conditional samples", parts.class_samples, (fm,)),
                            ("landscapes from segmentation maps", parts.landscapes, (lm,)),
                            ("completion", parts.completion, (lm,)),
                            ("sample quality (FID / KID)", parts.sample_quality, (fm,))):
        say(f"{title} ...")
        t = time.perf_counter()
        sections.append(fn(ctx, *args))
        sections[-1].seconds = time.perf_counter() - t
        say(f"{title}: {sections[-1].seconds:.1f} s")
    total = time.perf_counter() - t0
    footer = {"models": f"{fashion}, {landscapes} (bundled; see docs/models.md)", "seed": seed,
              "total time": f"{total:.0f} s", "threads": torch.get_num_threads(),
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "torch": torch.__version__, "written": time.strftime("%Y-%m-%d %H:%M")}
    intro = ("Everything on this page was computed by <code>vqforge demo</code> from the bundled models on this "
             "machine: VQGAN reconstructions, a transformer composing codebook entries into new images (per class, "
             "with and without guidance), landscapes from segmentation maps at the trained size and, through the "
             "sliding window, far larger, a completion, and sample quality numbers.")
    page = write_page(out, "vqforge demo", intro, sections, footer)
    say(f"wrote {page} in {total:.0f} s")
    return page
