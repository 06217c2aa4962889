"""The sampling job: one :class:`~vqforge.sampling.request.SampleRequest` -> plan -> tokens -> images -> a
:class:`SampleResult` (which :mod:`vqforge.sampling.record` writes as PNGs and ``settings.json``).

:func:`plan_job` settles everything before a token is drawn: the settings (what the request gives, else the model
card's, else the one table of :mod:`.defaults`), the size and its layout (:func:`.pipeline.layout`), the memory
(:func:`.memory.fit_batches`: the batch size and a whole or tiled decode, or a one-line refusal naming the
largest size that fits), the completion's image read at that size, the condition inputs (:mod:`.conditions`)
and the rejection plan. :func:`run_job` then draws the batches (:func:`.pipeline.draw_batches`, or
:func:`.rejection.rejection_batches`) and reports every token to the request's progress callback
(:class:`~vqforge.sampling.request.JobStep`); raising from it cancels the job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..io import VQForgeError
from ..memory import Budget
from .complete import token_mask
from .conditions import condition_files, condition_inputs, is_in_memory
from .defaults import card_max_scale, settings_for
from .memory import fit_batches
from .pipeline import Layout, draw_batches, layout, sample_images
from .processors import SamplingSettings
from .rejection import RejectionPlan, plan_rejection, rejection_batches
from .request import JobProgress, JobStep, SampleRequest

Notice = Callable[[str], None]


@dataclass(frozen=True)
class JobPlan:
    """A request made definite: its settings, layout (fitted to the memory budget) and batch size; ``count``
    images kept of ``n_drawn`` drawn (more with rejection), ``n_steps`` tokens drawn per image (a completion:
    the masked ones); the condition inputs (and their files); a completion's image and mask at the job's size."""

    settings: SamplingSettings
    layout: Layout
    batch_size: int
    count: int
    n_drawn: int
    n_steps: int
    inputs: tuple
    sources: tuple
    image: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    reject: RejectionPlan | None = None


@dataclass(frozen=True)
class SampleResult:
    """What a job made: ``images`` (N, C, H, W) in [-1, 1] on the CPU, one record per image (its file name, its
    condition, its condition file; its score under rejection), and how long it took."""

    request: SampleRequest
    plan: JobPlan
    images: torch.Tensor
    samples: list[dict]
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.plan.n_drawn * self.plan.n_steps / max(self.seconds, 1e-9)


def _fail(request: SampleRequest, e: Exception) -> VQForgeError:
    """A library ValueError as the job's one-line error, prefixed by the request's name."""
    line = str(e).splitlines()[0] if str(e) else type(e).__name__
    return VQForgeError(f"{request.name}: {line}" if request.name else line)


def resolve_size(request: SampleRequest) -> tuple[int, int]:
    """The size the job asks for: the request's (H, W), or its multiple of the trained size, else the
    completion's image size, else the trained size."""
    trained = request.model.trained_hw
    if isinstance(request.size, (int, float)) and not isinstance(request.size, bool):
        return round(trained[0] * request.size), round(trained[1] * request.size)
    if request.size is not None:
        return tuple(request.size)
    if request.completion is not None and request.completion.image_hw is not None:
        return tuple(request.completion.image_hw)
    return tuple(trained)


def _counts(request: SampleRequest) -> tuple[int, int]:
    """(images to draw, condition inputs to read), known before any file is read."""
    if request.inputs is not None:
        n_inputs = len(request.inputs)
    elif is_in_memory(request.cond):
        n_inputs = len(request.cond) if isinstance(request.cond, (list, tuple)) else 1
    else:
        n_inputs = len(condition_files(request.cond)) if request.cond else 1
    if request.count is not None:
        if request.count < 1:
            raise VQForgeError(f"count {request.count}: must be >= 1")
        return request.count, n_inputs
    if request.completion is not None or request.cond_tokens is not None:
        return (1 if request.cond_tokens is None else len(request.cond_tokens)), n_inputs
    return (n_inputs if request.cond is not None else 8), n_inputs


def _fit(request: SampleRequest, hw, n: int, n_inputs: int, cfg: float, budget: Budget) -> tuple[Layout, int]:
    """The layout at ``hw`` fitted to ``budget`` for ``n`` images, and the batch size (one-line errors)."""
    model = request.model
    try:
        lay = layout(model, hw, request.window, cfg_scale=cfg, cond_encoding=request.cond_encoding)
        return fit_batches(model, lay, budget, request.batch_size, n, guided=cfg > 0,
                           completing=request.completion is not None, n_inputs=n_inputs)
    except ValueError as e:
        raise _fail(request, e) from None


def _read_completion(request: SampleRequest, lay: Layout):
    """The completion's (image (C, H, W), mask (H, W)) at the job's size; an empty mask is refused."""
    c = request.completion
    image, mask = c.read(lay.image_hw, request.model.first_stage.config.ddconfig.in_channels)
    if not mask.any():
        raise VQForgeError(f"{c.mask_name}: the mask is empty (nothing to complete)")
    return image, mask


def plan_job(request: SampleRequest, notice: Notice | None = None) -> JobPlan:
    """Everything the job will do, checked before a token is drawn (one-line :class:`VQForgeError` otherwise);
    ``notice`` receives warnings (a size larger than trained for, maps that look like another label set)."""
    model = request.model
    try:
        settings = settings_for(getattr(model, "card", None) or {}, request.top_k, request.top_p,
                                request.temperature, request.cfg, request.greedy)
    except ValueError as e:
        raise VQForgeError(f"sampling settings: {e}") from None
    cfg, budget = settings.cfg_scale, request.budget or Budget.default(model.transformer.pos_emb.device)
    n, n_inputs = _counts(request)
    lay, _ = _fit(request, resolve_size(request), n, n_inputs, cfg, budget)  # refused before reading at that size
    image = mask = None
    if request.completion is not None:
        image, mask = _read_completion(request, lay)
        if tuple(image.shape[1:]) != lay.image_hw:
            lay, _ = _fit(request, tuple(image.shape[1:]), n, n_inputs, cfg, budget)
    inputs, sources = _inputs(request, lay)
    if notice is not None:
        _check_label_sets(request, inputs, sources, notice)
        _check_trained_size(request, lay, notice)
    reject = _rejection(request, inputs, n)
    n_drawn = reject.n_candidates if reject is not None else n
    lay, batch = _fit(request, lay.image_hw, n_drawn, n_inputs, cfg, budget)
    steps = int(token_mask(mask, model.first_stage.downsample_factor).sum()) if mask is not None else lay.n_tokens
    return JobPlan(settings, lay, batch, n, n_drawn, steps, tuple(inputs), tuple(sources), image, mask, reject)


def _inputs(request: SampleRequest, lay: Layout) -> tuple[list, list]:
    """Per-sample model inputs (1, ...) and their files: given, or read by :func:`.conditions.condition_inputs`."""
    if request.cond_tokens is not None:
        return [None], [None]
    if request.inputs is not None:
        return list(request.inputs), list(request.sources or [None] * len(request.inputs))
    classes = None if request.classes is None else [str(c) for c in request.classes]
    try:
        return condition_inputs(request.model.condition, lay.image_hw, classes, request.cond)
    except ValueError as e:
        raise _fail(request, e) from None


def _rejection(request: SampleRequest, inputs: list, n: int) -> RejectionPlan | None:
    """The rejection plan of a rejection request (class-conditional models only), else None."""
    if request.rejection is None:
        return None
    if any(c is None or c.numel() != 1 or c.is_floating_point() for c in inputs):
        raise _fail(request, ValueError("--reject-with needs a class-conditional model (its samples are scored by "
                                        "the classifier's probability of their class)"))
    try:
        return plan_rejection(n, len(inputs), request.rejection.acceptance)
    except ValueError as e:
        raise VQForgeError(f"--acceptance: {e}") from None


def _check_trained_size(request: SampleRequest, lay: Layout, notice: Notice) -> None:
    """A notice when the job is larger than the model's card says it was trained for."""
    model = request.model
    found = card_max_scale(getattr(model, "card", None) or {})
    if found is None:
        return
    scale, why = found
    (H, W), (th, tw) = lay.image_hw, model.trained_hw
    if H > th * scale or W > tw * scale:
        notice(f"warning: {request.name or 'the model'}: {H}x{W} px is larger than it was trained for (up to "
               f"{int(th * scale)}x{int(tw * scale)} px: {why}); expect artefacts")


def _check_label_sets(request: SampleRequest, inputs: list, sources: list, notice: Notice) -> None:
    """One notice per condition map whose label ids do not fit the model's label set
    (:func:`vqforge.labels.label_set_problems`), from the names and common labels on the model's card."""
    from ..labels import label_set_problems

    model = request.model
    if not getattr(model.condition, "n_labels", 0) or not any(sources):
        return
    card = getattr(model, "card", None) or {}
    names, common = card.get("label_names") or [], card.get("common_labels") or []
    if not isinstance(names, list) or not isinstance(common, list):
        return
    common = [i for i in common if isinstance(i, int) and not isinstance(i, bool)]
    flagged = []
    for c, source in zip(inputs, sources):
        if source is None or c is None or c.dim() != 4:
            continue
        problems = label_set_problems(c[0].flatten(1).sum(1).cpu().numpy(), names, common)  # pixels per id
        if problems:
            flagged.append(f"{source}: {'; '.join(problems)}")
    for line in flagged[:3]:
        notice(f"warning: {line}")
    if len(flagged) > 3:
        notice(f"warning: {len(flagged) - 3} more condition map(s) with the same kind of problem")


def run_job(request: SampleRequest, progress: JobProgress | None = None, notice: Notice | None = None,
            plan: JobPlan | None = None) -> SampleResult:
    """Run one sampling job (planned by :func:`plan_job` unless ``plan`` is given): the images, one record per
    image, the time taken. ``progress`` sees every token (:class:`~vqforge.sampling.request.JobStep`); an
    exception raised from it stops the job and propagates. One-line :class:`VQForgeError` for any problem."""
    plan = plan or plan_job(request, notice)
    model = request.model
    device = model.transformer.pos_emb.device
    generator = None if request.seed is None else torch.Generator(device=device).manual_seed(request.seed)
    t0 = time.perf_counter()
    images, samples, scores = [], [], []
    try:
        for picks, x in _batches(request, plan, generator, _tracker(plan, progress), scores):
            for j in picks:
                samples.append(_sample_record(model, f"{len(samples):05d}.png", plan.inputs[j], plan.sources[j]))
            images.append(x.cpu())
    except ValueError as e:
        raise _fail(request, e) from None
    seconds = time.perf_counter() - t0
    if scores:
        samples = [dict(e, score=round(v, 6)) for e, v in zip(samples, scores)]
    return SampleResult(request, plan, torch.cat(images), samples, seconds)


def _batches(request: SampleRequest, plan: JobPlan, generator, callback, scores: list
             ) -> Iterator[tuple[list[int], torch.Tensor]]:
    """The job's batches of (which input each image used, images (B, C, H, W) in [-1, 1])."""
    model, lay, s = request.model, plan.layout, plan.settings
    if request.cond_tokens is not None:  # condition tokens given (the trainer's previews)
        for start in range(0, plan.count, plan.batch_size):
            cond = request.cond_tokens[start:start + plan.batch_size].to(model.transformer.pos_emb.device)
            yield [0] * len(cond), sample_images(model, lay, cond, s, generator, None, request.decoding, callback)[0]
    elif plan.reject is not None:
        labels = [int(c) for c in plan.inputs]

        def score(images: torch.Tensor, picks: list[int]) -> torch.Tensor:
            return request.rejection.score(images, torch.tensor([labels[j] for j in picks]))

        yield from rejection_batches(model, lay, list(plan.inputs), plan.reject, plan.batch_size, s,
                                     score, generator, decoding=request.decoding,
                                     callback=callback, scores_out=scores)
    else:
        feather = None if request.completion is None or request.completion.paste_back else -1
        yield from draw_batches(model, lay, list(plan.inputs), plan.count, plan.batch_size, s, generator,
                                plan.image, plan.mask, decoding=request.decoding, callback=callback, feather=feather)


def _tracker(plan: JobPlan, progress: JobProgress | None):
    """The library's per-token callback ``(done, total, tokens)`` of one batch -> ``progress(JobStep)`` over the
    whole job (None without a progress callback)."""
    if progress is None:
        return None
    state = {"before": 0, "last": 0, "rows": 0}
    total = plan.n_drawn * plan.n_steps

    def callback(done: int, batch_total: int, tokens: torch.Tensor) -> None:
        if done <= state["last"]:  # a new batch began
            state["before"] += state["last"] * state["rows"]
        state["last"], state["rows"] = done, tokens.shape[0]
        progress(JobStep(state["before"] + done * tokens.shape[0], total, done, batch_total,
                         tokens, plan.layout))

    return callback


def _sample_record(model, file: str, c, source) -> dict:
    """One sample's entry in settings.json: its file, its condition (e.g. the class) and condition file."""
    entry = {"file": file, **(model.condition.input_record(c) if c is not None else {})}
    if source is not None:
        entry["cond"] = str(source) if isinstance(source, Path) else source
    return entry
