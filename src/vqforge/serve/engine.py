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

from .. import bundled
from ..api import card_max_scale, card_sampling, load, model_card, resolve_model_path, sampling_defaults
from ..io import VQForgeError
from ..labels import label_colours
from ..metrics import psnr
from ..models.transformer import Net2NetTransformer
from ..models.vqgan import VQGAN
from ..memory import Budget, largest_fitting, refusal
from ..models.footprint import vqgan_roundtrip_bytes
from ..sampling import decode_tokens, fit_budget, layout
from ..sampling.defaults import settings_for
from ..sampling.job import run_job
from ..sampling.request import Completion, JobStep, SampleRequest
from .forms import BadInput, JobSettings
from .images import indices_picture

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
    """What a model directory's model.yaml records under ``extra`` for the page: ``label_names`` (a list),
    ``common_labels`` (label ids the palette shows first, the first one filling a new map) and ``sampling``
    (suggested settings: top_k, top_p, temperature, cfg) and ``max_scale`` (:func:`vqforge.api.card_max_scale`).
    Class names live in the class config."""
    extra = model_card(path)
    card = {"label_names": [str(v) for v in extra["label_names"]]} if isinstance(extra.get("label_names"), list) else {}
    common = extra.get("common_labels") if isinstance(extra.get("common_labels"), list) else []
    card["common_labels"] = [v for v in common if isinstance(v, int) and not isinstance(v, bool)]
    card["sampling"] = card_sampling(extra)
    card["max_scale"] = card_max_scale(extra)
    return card


#: Output sides offered on the page, as ratios of the trained side (then whole multiples up to --max-side).
SIDE_RATIOS = (0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5)
#: the largest side offered, in trained sides, to a model whose card sets no limit (time grows with the token count)
MAX_SIDE_TIMES = 16


def offered_sides(trained_hw: tuple[int, int], factor: int, max_side: int, fits,
                  max_hw: tuple[int, int] | None = None) -> dict[str, list[int]]:
    """The output heights and widths a page offers for a model trained at ``trained_hw`` (downsampling ``factor``):
    simple ratios of the trained side (whole multiples above 3.5x), on the downsampling grid, up to ``max_side`` and
    ``max_hw`` (the model's own limit, e.g. its card's; without one :data:`MAX_SIDE_TIMES` trained sides), for which
    ``fits((H, W))`` (with the other side at its trained value: the checks are per axis) says a job can be planned
    within the memory budget."""
    def offered(axis: int) -> list[int]:
        trained, out = trained_hw[axis], []
        cap = min(max_side, max_hw[axis] if max_hw is not None else MAX_SIDE_TIMES * trained)
        ratios = list(SIDE_RATIOS) + list(range(4, cap // max(trained, 1) + 1))
        for side in sorted({max(1, round(trained * r / factor)) * factor for r in ratios}):
            hw = list(trained_hw)
            hw[axis] = side
            if side <= cap and fits(tuple(hw)):
                out.append(side)
        return out

    return {"height": offered(0), "width": offered(1)}


class Engine:
    """One loaded model (a transformer pipeline or a bare VQGAN) and the tasks the web app runs on it.

    What a transformer can do follows from its conditioning mode object (``model.condition``), never from the
    mode's name: classes to pick (``label_inputs``), a default input (unconditional, coordinates: sample with
    nothing given), label maps to paint (``n_labels``), a null condition to guide with (``null_id``).
    """

    def __init__(self, name: str, model: torch.nn.Module, device: torch.device, card: dict | None = None):
        if not isinstance(model, (Net2NetTransformer, VQGAN)):
            raise VQForgeError(f"{name}: the web app serves transformer models and VQGANs, not {type(model).__name__}")
        self.name, self.device = name, device
        self.model = model.to(device).eval()
        self.net = model if isinstance(model, Net2NetTransformer) else None
        self.vqgan = model.first_stage if self.net is not None else model
        self.factor = self.vqgan.downsample_factor
        self.card = card or {}
        self.channels = self.vqgan.config.ddconfig.in_channels  # photos are converted to this (1: gray)
        if self.channels not in (1, 3):
            raise VQForgeError(f"{name}: a VQGAN of {self.channels}-channel inputs; the web app works on RGB or "
                               f"grayscale images")
        self.condition = self.net.condition if self.net is not None else None
        self.classes = self._class_list()  # [(id, caption)]: the labels a sample may ask for
        self.free = self.condition is not None and self.condition.default_input(1, self.trained_hw) is not None
        self.n_labels = int(getattr(self.condition, "n_labels", 0) or 0)  # label maps to paint

    # ------------------------------------------------------------------------------------------- describing
    @property
    def tasks(self) -> tuple[str, ...]:
        tasks = (("sample",) if self.classes or self.free else ()) + (("synthesize",) if self.n_labels else ())
        return tasks + (("complete",) if tasks else ()) + ("reconstruct",)  # complete: under a class or a map

    @property
    def trained_hw(self) -> tuple[int, int]:
        if self.net is not None:
            return self.net.trained_hw
        r = self.vqgan.config.ddconfig.resolution
        return r, r

    @property
    def defaults(self) -> dict[str, float]:
        """The sampling settings a job starts from, on the page and through the API alike: the model card's
        (:func:`vqforge.api.sampling_defaults`, as the command line); top_p 1.0 = off; no guidance for a model
        without a null condition."""
        d = sampling_defaults({"sampling": self.card.get("sampling", {})})
        guidance = self.condition is not None and self.condition.null_id is not None
        return {"top_k": int(d["top_k"] or 0), "top_p": float(d["top_p"] or 1.0),
                "temperature": float(d["temperature"]), "cfg": float(d["cfg"]) if guidance else 0.0}

    def describe(self, max_side: int) -> dict:
        """What the page needs to build its controls for this model (sizes up to ``max_side`` px)."""
        guidance = self.condition is not None and self.condition.null_id is not None
        info = {"name": self.name, "kind": "transformer" if self.net is not None else "vqgan",
                "mode": self.condition.name if self.condition is not None else None, "tasks": list(self.tasks),
                "trained_size": list(self.trained_hw), "factor": self.factor, "n_codes": self.vqgan.n_codes,
                "channels": self.channels, "guidance": guidance, "defaults": self.defaults,
                "sides": self.sides(max_side)}
        if self.max_hw is not None:
            info["trained_for"] = {"size": list(self.max_hw), "why": self.card["max_scale"][1]}
        if self.classes:
            info["classes"] = [{"id": i, "name": caption} for i, caption in self.classes]
        if self.n_labels:
            names = self.card.get("label_names") or []
            colours = label_colours(self.n_labels, names)  # natural colours from the names: sky blue, ...
            hexes = ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in colours]
            common = list(dict.fromkeys(i for i in self.card.get("common_labels", []) if 0 <= i < self.n_labels))
            order = common + [i for i in range(self.n_labels) if i not in common]  # the palette's order
            info["labels"] = [{"id": i, "name": names[i] if i < len(names) else f"label {i}", "color": hexes[i]}
                              for i in order]
        return info

    @property
    def max_hw(self) -> tuple[int, int] | None:
        """The largest size (H, W) the transformer was trained for: its card's ``max_scale`` times the trained size,
        on the downsampling grid (None: the card does not say; a bare VQGAN: no limit)."""
        if self.net is None or not self.card.get("max_scale"):
            return None
        scale = self.card["max_scale"][0]
        return tuple(max(self.factor, int(t * scale) // self.factor * self.factor) for t in self.trained_hw)

    def sides(self, max_side: int) -> dict[str, list[int]]:
        """The output heights and widths the page offers (:func:`offered_sides`): up to ``max_side`` and the size
        the model was trained for (:attr:`max_hw`), those a one-image job can be planned at within the memory
        budget (:attr:`budget`)."""
        return offered_sides(self.trained_hw, self.factor, max_side, self._fits, self.max_hw)

    @property
    def budget(self) -> Budget:
        """The memory budget of one job: ``vqforge serve --max-memory``, else a share of the memory available
        when first asked (:meth:`vqforge.memory.Budget.default`)."""
        if getattr(self, "_budget", None) is None:
            self._budget = Budget.default(self.device)
        return self._budget

    @budget.setter
    def budget(self, value: Budget | None) -> None:
        self._budget = value

    def _fits(self, hw: tuple[int, int]) -> bool:
        try:
            if self.net is None:
                return vqgan_roundtrip_bytes(self.vqgan.config, hw) <= self.budget.bytes
            fit_budget(self.net, layout(self.net, hw), self.budget)
        except ValueError:
            return False
        return True

    # ------------------------------------------------------------------------------------------- checking
    def check(self, task: str, s: JobSettings, size_hw: tuple[int, int] | None = None) -> tuple[int, int]:
        """Raise :class:`BadInput` when ``task`` cannot run with ``s``; return the output size (H, W)."""
        if task not in self.tasks:
            kind = self.condition.name if self.condition is not None else "vqgan"
            raise BadInput(f"model {self.name!r} ({kind}) cannot {task}; it can: {', '.join(self.tasks)}")
        hw = size_hw or ((s.height, s.width) if s.height else self.trained_hw)
        if hw[0] % self.factor or hw[1] % self.factor:
            raise BadInput(f"size {hw[0]}x{hw[1]}: not a multiple of the model's downsampling factor {self.factor}")
        if task == "reconstruct":
            need = vqgan_roundtrip_bytes(self.vqgan.config, hw)
            if need > self.budget.bytes:  # the largest size of this aspect that fits, on the grid
                f, long = self.factor, max(hw) // self.factor

                def at(t: int) -> tuple[int, int]:
                    return max(1, round(hw[0] * t / max(hw))) * f, max(1, round(hw[1] * t / max(hw))) * f

                t = largest_fitting(lambda t: vqgan_roundtrip_bytes(self.vqgan.config, at(t)), self.budget.bytes, 1,
                                    long)
                raise BadInput(str(refusal(f"size {hw[0]}x{hw[1]}", need, self.budget,
                                           None if t is None else "x".join(map(str, at(t))), "a reconstruction")))
            return hw
        top = self.max_hw
        if top is not None and (hw[0] > top[0] or hw[1] > top[1]):
            raise BadInput(f"size {hw[0]}x{hw[1]}: {self.name} was trained for sizes up to {top[0]}x{top[1]} "
                           f"({self.card['max_scale'][1]})")
        if s.class_label is not None and s.class_label not in {i for i, _ in self.classes}:
            raise BadInput(f"class_label: {s.class_label} is out of range: this model has "
                           + (f"classes {self.classes[0][0]}..{self.classes[-1][0]}" if self.classes else "no classes"))
        try:
            settings_for({}, s.top_k, s.top_p, s.temperature, s.cfg)
            fit_budget(self.net, layout(self.net, hw, cfg_scale=s.cfg), self.budget, batch=s.count, num=s.count,
                       guided=s.cfg > 0, completing=task == "complete")
        except ValueError as e:  # the sampling job's own checks, before the job is queued
            raise BadInput(str(e)) from None
        return hw

    # ------------------------------------------------------------------------------------------- tasks
    def sample(self, s: JobSettings, progress: Progress) -> Output:
        """``s.count`` samples of a model that needs no map, at ``s``'s size (sliding window if larger)."""
        return self._draw("sample", s, self.check("sample", s), self._inputs(s), progress)

    def synthesize(self, s: JobSettings, ids: np.ndarray, progress: Progress) -> Output:
        """``s.count`` images that follow the label map ``ids`` (H, W), at the map's size."""
        return self._draw("synthesize", s, self.check("synthesize", s, tuple(ids.shape)), [self._map_input(ids)],
                          progress)

    def complete(self, s: JobSettings, image: torch.Tensor, mask: torch.Tensor, progress: Progress,
                 ids: np.ndarray | None = None) -> Output:
        """``s.count`` completions of ``image`` (C, H, W) where ``mask`` (H, W) is True; a segmentation model
        completes under the label map ``ids`` (H, W)."""
        hw = self.check("complete", s, tuple(image.shape[1:]))
        inputs = [self._map_input(ids)] if ids is not None else self._inputs(s)
        return self._draw("complete", s, hw, inputs, progress, Completion.of(image, mask, s.paste_back))

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
    def _class_list(self) -> list[tuple[int, str]]:
        """(id, caption) of every label the condition takes by name or id (``--class``), [] when it takes none."""
        try:
            inputs = self.condition.label_inputs(None) if self.condition is not None else None
        except ValueError:
            return []
        return [(int(c.view(-1)[0]), self._caption(c)) for c in inputs or []]

    def _caption(self, c: torch.Tensor) -> str:
        """What the condition records about one model input (a class: its id and name), as a caption."""
        return ": ".join(str(v) for v in self.condition.input_record(c).values())

    def _map_input(self, ids: np.ndarray) -> torch.Tensor:
        """A label map (H, W) as the model input (1, ...)."""
        return self.condition.build_input(raw=torch.from_numpy(ids)[None]).to(self.device)

    def _inputs(self, s: JobSettings) -> list[torch.Tensor | None]:
        """Per-sample model inputs (1, ...): ``s.class_label``, or each label in turn; ``[None]`` for a model without
        labels (the condition's default input)."""
        if not self.classes:
            return [None]
        ids = [s.class_label] if s.class_label is not None else [i for i, _ in self.classes]
        return self.condition.label_inputs([str(i) for i in ids])

    def _draw(self, task: str, s: JobSettings, hw: tuple[int, int], inputs: list, progress: Progress,
              completion: Completion | None = None) -> Output:
        """The sampling job (one batch of ``s.count``), captioned by what each sample's input was."""
        request = SampleRequest(self.net, count=s.count, inputs=tuple(inputs), size=hw, top_k=s.top_k,
                                top_p=s.top_p, temperature=s.temperature, cfg=s.cfg, seed=s.seed, batch_size=s.count,
                                budget=self.budget, completion=completion)
        try:
            result = run_job(request, self._progress(progress, rows=completion is None))
        except VQForgeError as e:
            raise BadInput(str(e)) from None
        picks = [k % len(inputs) for k in range(s.count)]
        captions = [self._caption(inputs[j]) if self.classes else "" for j in picks]
        record = self._record(task, s, result.plan.layout)
        if completion is not None:
            record["masked_tokens"] = result.plan.n_steps
        return Output(list(result.images), captions, record)

    def _record(self, task: str, s: JobSettings, lay) -> dict:
        given = {k: v for k, v in s.to_dict().items() if k not in ("height", "width")}  # "size" is what ran
        if task != "complete":
            given.pop("paste_back")
        return {"task": task, **given, "mode": self.condition.name, "size": list(lay.image_hw),
                "token_grid": list(lay.grid_hw), "window": list(lay.window_hw), "sliding_window": lay.sliding}

    def _progress(self, progress: Progress, rows: bool):
        """The job's per-token progress (:class:`~vqforge.sampling.request.JobStep`) -> ``progress(done, total,
        preview)`` over the batch.

        ``rows``: tokens arrive in raster order from an empty grid; the preview shows the rows done and grey below.
        """

        def callback(step: JobStep) -> None:
            lay, done, tokens = step.layout, step.batch_done, step.tokens
            h, w = lay.grid_hw

            def preview() -> list[torch.Tensor]:
                z = tokens.reshape(tokens.shape[0], -1).clone()
                full = done // w if rows else h
                if rows:
                    z[:, done:] = 0  # not yet sampled: any valid code (hidden below)
                with torch.inference_mode():
                    x = decode_tokens(self.net, z, lay).cpu()
                x[:, :, full * self.factor:] = 0.0  # mid-grey where no row is finished yet
                return list(x)

            progress(done, step.batch_total, preview)

        return callback
