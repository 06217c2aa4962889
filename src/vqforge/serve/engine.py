"""The web app's one adapter to the library: load models, and sample / synthesise / complete / reconstruct.

Everything the server does with a model goes through :class:`Engine`, so that a change of the sampling API
means a change of this file only. Tasks report progress through ``progress(done, total, preview)``, where
``preview`` (or None) returns the images decoded from the tokens so far; raising from it cancels the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml

from .. import bundled
from ..api import load, resolve_model_path
from ..io import VQForgeError
from ..metrics import psnr
from ..models.transformer import Net2NetTransformer
from ..models.vqgan import VQGAN
from ..sampling import SamplingSettings, complete_image, condition_tokens, layout, sample_images
from .forms import BadInput, JobSettings
from .images import indices_picture, palette

Preview = Callable[[], list[torch.Tensor]]
Progress = Callable[[int, int, "Preview | None"], None]


@dataclass
class Output:
    """What a task made: images (C, H, W) in [-1, 1] with a caption each, numbers, and the settings used."""

    images: list[torch.Tensor]
    captions: list[str]
    settings: dict
    metrics: dict = field(default_factory=dict)


def bundled_names() -> list[str]:
    """Names of the models that ship with vqforge (``vqforge models``)."""
    return bundled.names()


def load_engines(specs: list[str], device: torch.device) -> dict[str, "Engine"]:
    """One :class:`Engine` per model spec (a bundled name or a model/run directory or checkpoint file)."""
    engines: dict[str, Engine] = {}
    for spec in specs:
        path = resolve_model_path(spec)
        name = spec if bundled.find(str(spec)) is not None else path.name.removesuffix(".pt") or str(spec)
        while name in engines:
            name += "-2"
        engines[name] = Engine(name, load(path), device, _card_of(path))
    return engines


def _card_of(path: Path) -> dict:
    """What a model directory's model.yaml records under ``extra`` for the page: ``class_names``,
    ``label_names`` (lists) and ``sampling`` (suggested settings: top_k, top_p, temperature, cfg)."""
    try:
        extra = (yaml.safe_load((path / "model.yaml").read_text()) or {}).get("extra") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return {}
    card = {k: [str(v) for v in extra[k]] for k in ("class_names", "label_names") if isinstance(extra.get(k), list)}
    sampling = extra.get("sampling") if isinstance(extra.get("sampling"), dict) else {}
    card["sampling"] = {k: sampling[k] for k in ("top_k", "top_p", "temperature", "cfg")
                        if isinstance(sampling.get(k), (int, float)) and not isinstance(sampling.get(k), bool)}
    return card


class Engine:
    """One loaded model (a transformer pipeline or a bare VQGAN) and the tasks the web app runs on it."""

    def __init__(self, name: str, model: torch.nn.Module, device: torch.device, card: dict | None = None):
        if not isinstance(model, (Net2NetTransformer, VQGAN)):
            raise VQForgeError(f"{name}: the web app serves transformer models and VQGANs, not {type(model).__name__}")
        self.name, self.device = name, device
        self.model = model.to(device).eval()
        self.net = model if isinstance(model, Net2NetTransformer) else None
        self.vqgan = model.first_stage if self.net is not None else model
        self.factor = self.vqgan.downsample_factor
        self.card = card or {}
        if self.vqgan.config.ddconfig.in_channels != 3:
            raise VQForgeError(f"{name}: a VQGAN of {self.vqgan.config.ddconfig.in_channels}-channel inputs; "
                               f"the web app reconstructs RGB photos")

    # ------------------------------------------------------------------------------------------- describing
    @property
    def mode(self) -> str | None:
        return self.net.mode if self.net is not None else None

    @property
    def tasks(self) -> tuple[str, ...]:
        mode = self.mode
        if mode in ("unconditional", "class"):
            return ("sample", "complete", "reconstruct")
        if mode == "segmentation":
            return ("synthesize", "reconstruct")
        return ("reconstruct",)

    @property
    def trained_hw(self) -> tuple[int, int]:
        if self.net is not None:
            return self.net.trained_hw
        r = self.vqgan.config.ddconfig.resolution
        return r, r

    def describe(self) -> dict:
        """What the page needs to build its controls for this model."""
        cond = self.net.config.cond if self.net is not None else None
        guidance = self.net is not None and self.net.null_class_token is not None
        info = {"name": self.name, "kind": "transformer" if self.net is not None else "vqgan", "mode": self.mode,
                "tasks": list(self.tasks), "trained_size": list(self.trained_hw), "factor": self.factor,
                "n_codes": self.vqgan.n_codes, "guidance": guidance, "defaults": self.card.get("sampling", {})}
        if self.mode == "class":
            names = self.card.get("class_names") or [str(i) for i in range(cond.n_classes)]
            info["classes"] = [{"id": i, "name": n} for i, n in enumerate(names[:cond.n_classes])]
        if self.mode == "segmentation":
            names = self.card.get("label_names") or [f"label {i}" for i in range(cond.n_labels)]
            hexes = ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in palette(cond.n_labels)]
            info["labels"] = [{"id": i, "name": names[i] if i < len(names) else f"label {i}", "color": hexes[i]}
                              for i in range(cond.n_labels)]
        return info

    @property
    def n_labels(self) -> int:
        return self.net.config.cond.n_labels if self.mode == "segmentation" else 0

    # ------------------------------------------------------------------------------------------- checking
    def check(self, task: str, s: JobSettings, size_hw: tuple[int, int] | None = None) -> tuple[int, int]:
        """Raise :class:`BadInput` when ``task`` cannot run with ``s``; return the output size (H, W)."""
        if task not in self.tasks:
            raise BadInput(f"model {self.name!r} ({self.mode or 'vqgan'}) cannot {task}; "
                           f"it can: {', '.join(self.tasks)}")
        hw = size_hw or ((s.height, s.width) if s.height else self.trained_hw)
        if hw[0] % self.factor or hw[1] % self.factor:
            raise BadInput(f"size {hw[0]}x{hw[1]}: not a multiple of the model's downsampling factor {self.factor}")
        if task == "reconstruct":
            return hw
        if s.class_label is not None and self.mode == "class" and s.class_label >= self.net.config.cond.n_classes:
            raise BadInput(f"class_label: {s.class_label} is out of range: this model has classes "
                           f"0..{self.net.config.cond.n_classes - 1}")
        if s.cfg > 0 and self.net.null_class_token is None:
            raise BadInput("cfg: guidance needs a class-conditional model trained with a NULL class; set cfg to 0")
        try:
            layout(self.net, hw)
            _settings(s)
        except ValueError as e:
            raise BadInput(str(e)) from None
        return hw

    # ------------------------------------------------------------------------------------------- tasks
    def sample(self, s: JobSettings, progress: Progress) -> Output:
        """``s.count`` samples of the class / unconditional model at ``s``'s size (sliding window if larger)."""
        lay = layout(self.net, self.check("sample", s))
        classes = self._classes(s)
        cond, uncond = condition_tokens(self.net, lay, s.count, classes=classes, cfg_scale=s.cfg)
        x, _ = sample_images(self.net, lay, cond, _settings(s), self._generator(s), uncond,
                             callback=self._progress(lay, progress, rows=True))
        captions = [self._class_name(int(c)) for c in classes] if classes is not None else [""] * s.count
        return Output(list(x.cpu()), captions, self._record("sample", s, lay))

    def synthesize(self, s: JobSettings, ids: np.ndarray, progress: Progress) -> Output:
        """``s.count`` images that follow the segmentation map ``ids`` (H, W), at the map's size."""
        lay = layout(self.net, self.check("synthesize", s, tuple(ids.shape)))
        c = self.net.build_condition(raw=torch.from_numpy(ids)[None]).to(self.device)  # (1, n_labels, H, W)
        cond, uncond = condition_tokens(self.net, lay, s.count, cond=c.expand(s.count, -1, -1, -1), cfg_scale=s.cfg)
        x, _ = sample_images(self.net, lay, cond, _settings(s), self._generator(s), uncond,
                             callback=self._progress(lay, progress, rows=True))
        return Output(list(x.cpu()), [""] * s.count, self._record("synthesize", s, lay))

    def complete(self, s: JobSettings, image: torch.Tensor, mask: torch.Tensor, progress: Progress) -> Output:
        """``s.count`` completions of ``image`` (3, H, W) where ``mask`` (H, W) is True."""
        lay = layout(self.net, self.check("complete", s, tuple(image.shape[1:])))
        cond, uncond = condition_tokens(self.net, lay, s.count, classes=self._classes(s), cfg_scale=s.cfg)
        x = image[None].expand(s.count, -1, -1, -1).to(self.device)
        out, _, tmask = complete_image(self.net, x, mask.to(self.device), cond, lay, _settings(s), self._generator(s),
                                       uncond, callback=self._progress(lay, progress, rows=False))
        record = self._record("complete", s, lay)
        record["masked_tokens"] = int(tmask[0].sum())
        return Output(list(out.cpu()), [""] * s.count, record)

    def reconstruct(self, s: JobSettings, image: torch.Tensor) -> Output:
        """The VQGAN's reconstruction of ``image`` (3, H, W), its PSNR, and its codebook indices as a picture."""
        self.check("reconstruct", s, tuple(image.shape[1:]))
        x = image[None].to(self.device)
        with torch.inference_mode():
            out = self.vqgan(x)
        rec = out.reconstruction.clamp(-1, 1)
        idx = out.quantizer.indices[0]  # (h, w)
        used = int(idx.unique().numel())
        metrics = {"psnr_db": round(float(psnr(rec, x)[0]), 3), "token_grid": list(idx.shape),
                   "codes_used": used, "n_codes": self.vqgan.n_codes}
        record = {"task": "reconstruct", "model": self.name, "size": list(image.shape[1:]), **metrics}
        pictures = [rec[0].cpu(), indices_picture(idx, self.vqgan.n_codes, self.factor)]
        return Output(pictures, ["reconstruction", f"codebook indices ({used} distinct)"], record, metrics)

    # ------------------------------------------------------------------------------------------- helpers
    def _classes(self, s: JobSettings) -> torch.Tensor | None:
        """Class labels (count,) of a class model: ``s.class_label``, or every class in turn; else None."""
        if self.mode != "class":
            return None
        n = self.net.config.cond.n_classes
        return torch.tensor([s.class_label if s.class_label is not None else i % n for i in range(s.count)])

    def _class_name(self, c: int) -> str:
        names = self.card.get("class_names") or []
        return f"class {c}: {names[c]}" if c < len(names) else f"class {c}"

    def _generator(self, s: JobSettings) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(s.seed)

    def _record(self, task: str, s: JobSettings, lay) -> dict:
        given = {k: v for k, v in s.to_dict().items() if k not in ("height", "width")}  # "size" is what ran
        return {"task": task, **given, "mode": self.mode, "size": list(lay.image_hw), "token_grid": list(lay.grid_hw),
                "window": list(lay.window_hw), "sliding_window": lay.sliding}

    def _progress(self, lay, progress: Progress, rows: bool):
        """The library's per-token callback -> ``progress(done, total, preview)``.

        ``rows``: tokens arrive in raster order from an empty grid; the preview shows the rows done and grey below.
        """
        h, w = lay.grid_hw

        def callback(done: int, total: int, tokens: torch.Tensor) -> None:
            def preview() -> list[torch.Tensor]:
                z = tokens.reshape(tokens.shape[0], -1).clone()
                full = done // w if rows else h
                if rows:
                    z[:, done:] = 0  # not yet sampled: any valid code (hidden below)
                with torch.inference_mode():
                    x = self.net.decode_to_img(z, lay.grid_hw).clamp(-1, 1).cpu()
                x[:, :, full * self.factor:] = 0.0  # mid-grey where no row is finished yet
                return list(x)

            progress(done, total, preview)

        return callback


def _settings(s: JobSettings) -> SamplingSettings:
    return SamplingSettings(temperature=s.temperature, top_k=s.top_k or None,
                            top_p=s.top_p if s.top_p < 1.0 else None, cfg_scale=s.cfg)
