"""The memory of a sampling or completion job, and the plan that keeps it within a budget.

:func:`job_bytes` adds up what a job of a :class:`~vqforge.sampling.pipeline.Layout` holds at its worst moment
(estimates of :mod:`vqforge.models.footprint`, nothing allocated): the condition inputs at the image's size, the
token grids, the images kept until they are written, and the largest of the transient steps (the condition
stage's encoding of the whole map, the GPT's cache and prefill, the image encoding of a completion, the decoder).
:func:`fit_budget` returns the layout that fits a :class:`~vqforge.memory.Budget`: the whole decode when it fits,
else a tiled decode (:mod:`.tiles`) when that fits, else an :class:`~vqforge.memory.OverBudget` line naming the
size, the estimate and the largest size (same aspect) that fits. :func:`fit_batches` picks a job's batch size by the same estimate (the one
estimator of a sampling job's memory: the command line's ``--batch-size auto``, :func:`vqforge.sample`, the web
app and the benchmarks all come here).

The web app offers only sizes that pass :func:`fit_budget` (:func:`size_fits`).
"""

from __future__ import annotations

from dataclasses import replace

from ..memory import Budget, OverBudget, format_bytes, largest_fitting, refusal
from ..models.footprint import F32, gpt_bytes, vqgan_decode_bytes, vqgan_encode_bytes
from ..models.transformer import Net2NetTransformer
from .pipeline import Layout, layout
from .sliding import row_windows, spatial_cond_tokens, window_batch

def _cond_channels(model: Net2NetTransformer) -> int:
    """Channels of a spatial condition's model input (a segmentation's one-hot labels, a depth map, ...); 0 for
    conditions that are not maps."""
    dd = getattr(getattr(getattr(model, "cond_stage", None), "config", None), "ddconfig", None)
    return dd.in_channels if dd is not None else 0  # NOTE: the coordinate stage is no VQGAN: no maps


def job_bytes(model: Net2NetTransformer, lay: Layout, batch: int, num: int, guided: bool = False,
              completing: bool = False, n_inputs: int = 1) -> dict[str, int]:
    """Peak bytes of a job by part: ``num`` images in batches of ``batch`` at ``lay``; ``guided``: guidance doubles
    the GPT's batch; ``completing``: the input image is encoded too; ``n_inputs``: condition files read (each
    held at the image's size). The peak is ``sum(parts.values())`` minus the transient parts but their largest
    (see :func:`peak`)."""
    b = max(1, min(batch, num))
    rows = 2 * b if guided else b
    H, W = lay.image_hw
    h, w = lay.grid_hw
    pixels = H * W
    out_ch = model.first_stage.config.ddconfig.out_ch
    c_in = _cond_channels(model)
    parts = {
        # held for the whole job
        "condition maps": (min(n_inputs, num) + b) * pixels * (c_in * F32 + 8) if c_in else 0,
        "tokens": 3 * rows * h * w * 8 + h * w,
        "images": 3 * num * out_ch * pixels * F32 + 6 * pixels,  # kept, concatenated, the grid; a PNG's bytes
        "completion input": 2 * (3 + 1) * pixels * F32 * b if completing else 0,
    }
    wh, ww = lay.window_hw
    n_cond = model.n_cond_tokens(lay.image_hw)
    if lay.cond_hw is not None:  # a spatial condition: its share of a window (from the shapes)
        n_cond = spatial_cond_tokens(lay.cond_hw, lay.grid_hw, lay.window_hw)
        if lay.sliding and lay.cond_encoding == "window":  # each window's tokens, kept once encoded
            parts["tokens"] += (h - wh + 1) * (w - ww + 1) * n_cond * b * 8
    length = n_cond + wh * ww
    windows = 1  # the windows of a row prefilled together
    if lay.sliding:
        windows = window_batch(model.config.gpt, rows, length, row_windows(lay.grid_hw, lay.window_hw))
        windows = min(windows, lay.window_batch or windows)
    transient = {"transformer": gpt_bytes(model.config.gpt, windows * rows, length)}
    if c_in:
        transient["condition encoding"] = vqgan_encode_bytes(model.cond_stage.config, lay.image_hw, b).peak
    if completing:
        transient["image encoding"] = vqgan_encode_bytes(model.first_stage.config, lay.image_hw, b).peak
    transient["decoder"] = decoder_bytes(model, lay.grid_hw, lay.decode_tile, b)
    return {**parts, **{f"{k} (transient)": v for k, v in transient.items()}}


def decoder_bytes(model: Net2NetTransformer, grid_hw: tuple[int, int], tile: tuple[int, int] | None,
                  batch: int) -> int:
    """Decoding a (batch, h, w) grid: whole, or by tiles of ``tile`` (one tile's decode and the blended image)."""
    out_ch = model.first_stage.config.ddconfig.out_ch
    f = model.first_stage.downsample_factor
    pixels = grid_hw[0] * grid_hw[1] * f * f
    if tile is None:
        return vqgan_decode_bytes(model.first_stage.config, grid_hw, batch).peak + 2 * batch * out_ch * pixels * F32
    tile = (min(tile[0], grid_hw[0]), min(tile[1], grid_hw[1]))
    return (vqgan_decode_bytes(model.first_stage.config, tile, batch).peak
            + 3 * batch * out_ch * pixels * F32 + 2 * pixels * F32)


def peak(parts: dict[str, int]) -> int:
    """A job's peak from :func:`job_bytes`'s parts: the held parts and the largest transient one."""
    held = sum(v for k, v in parts.items() if not k.endswith("(transient)"))
    return held + max((v for k, v in parts.items() if k.endswith("(transient)")), default=0)


def _largest_tile(model: Net2NetTransformer, lay: Layout, batch: int, room: int) -> tuple[int, int] | None:
    """The largest square tile (tokens, at least the trained grid) whose tiled decode takes at most ``room``."""
    lo = max(model.latent_hw(model.trained_hw))
    side = largest_fitting(lambda t: decoder_bytes(model, lay.grid_hw, (t, t), batch), room, lo, max(lay.grid_hw))
    return None if side is None else (side, side)


def fitted(model: Net2NetTransformer, lay: Layout, budget: Budget, batch: int = 1, num: int = 1,
           guided: bool = False, completing: bool = False, n_inputs: int = 1) -> Layout | None:
    """``lay`` with the decode that fits ``budget`` (whole, else tiled), or None when neither fits; a sliding
    run prefills its windows one at a time when all of a row's together do not fit."""
    for windows in ((None, 1) if lay.sliding else (None,)):
        whole = replace(lay, decode_tile=None, window_batch=windows)
        parts = job_bytes(model, whole, batch=batch, num=num, guided=guided, completing=completing,
                          n_inputs=n_inputs)
        if peak(parts) <= budget.bytes:
            return whole
        tiled = _tiled(model, whole, budget, max(1, min(batch, num)), parts)
        if tiled is not None:
            return tiled
    return None


def fit_budget(model: Net2NetTransformer, lay: Layout, budget: Budget, batch: int = 1, num: int = 1,
               guided: bool = False, completing: bool = False, n_inputs: int = 1) -> Layout:
    """``lay`` with the decode that fits ``budget`` (whole, else tiled), or :class:`~vqforge.memory.OverBudget`:
    one line naming the size, the estimate, the budget and the largest size of the same aspect that fits."""
    args = dict(batch=batch, num=num, guided=guided, completing=completing, n_inputs=n_inputs)
    found = fitted(model, lay, budget, **args)
    if found is not None:
        return found
    parts = job_bytes(model, replace(lay, decode_tile=None), **args)
    largest = largest_size(model, lay, budget, **args)
    least = job_bytes(model, replace(lay, decode_tile=model.latent_hw(model.trained_hw)), **args)
    if peak(least) > peak(parts):  # a grid no larger than a tile
        least = parts
    big = sorted(((v, k.replace(" (transient)", "")) for k, v in least.items() if v), reverse=True)[:2]
    H, W = lay.image_hw
    raise refusal(f"size {H}x{W}" + (f" x {num} images" if num > 1 else ""), peak(least), budget,
                  None if largest is None else f"{largest[0]}x{largest[1]}",
                  "mostly " + " and ".join(f"{k} {format_bytes(v)}" for v, k in big))


#: the largest batch :func:`auto_batch_size` picks: beyond it a CPU decode step gains little per token (the
#: bundled fashion model's 64 guided images: 15% less CPU time at 64 than at 32, for half the steps)
MAX_AUTO_BATCH = 64


def auto_batch_size(model: Net2NetTransformer, lay: Layout, num: int, budget: Budget | None = None,
                    guided: bool = False, completing: bool = False, n_inputs: int = 1) -> int:
    """How many of ``num`` samples to draw at once: at most :data:`MAX_AUTO_BATCH`, halved until the job fits
    ``budget`` (default: :meth:`~vqforge.memory.Budget.default`) by :func:`job_bytes`, whole or tiled; at least 1."""
    budget = Budget.default(model.transformer.pos_emb.device) if budget is None else budget
    size = max(1, min(num, MAX_AUTO_BATCH))
    while size > 1 and fitted(model, lay, budget, size, num, guided, completing, n_inputs) is None:
        size //= 2
    return size


def fit_batches(model: Net2NetTransformer, lay: Layout, budget: Budget, batch: int | None, num: int,
                guided: bool = False, completing: bool = False, n_inputs: int = 1) -> tuple[Layout, int]:
    """(``lay`` fitted to ``budget`` by :func:`fit_budget` for ``num`` samples in batches, the batch size).
    ``batch=None`` (auto): :func:`auto_batch_size`; an explicit batch that does not fit is refused
    (:class:`~vqforge.memory.OverBudget`), as is a job whose batch of one does not fit."""
    if batch is not None and batch < 1:
        raise ValueError(f"batch size {batch}: must be >= 1")
    job = dict(guided=guided, completing=completing, n_inputs=n_inputs)
    size = auto_batch_size(model, lay, num, budget, **job) if batch is None else batch
    return fit_budget(model, lay, budget, batch=size, num=num, **job), size


def _tiled(model, whole: Layout, budget: Budget, b: int, parts: dict[str, int]) -> Layout | None:
    """``whole`` with a tiled decode when one fits ``budget`` beside the job's other parts, else None."""
    others = dict(parts)
    others.pop("decoder (transient)")
    room = budget.bytes - sum(v for k, v in others.items() if not k.endswith("(transient)"))
    if room <= max((v for k, v in others.items() if k.endswith("(transient)")), default=0):
        return None
    tile = _largest_tile(model, whole, b, room)
    if tile is None or tile[0] >= max(whole.grid_hw):
        return None
    return replace(whole, decode_tile=tile)


def largest_size(model: Net2NetTransformer, lay: Layout, budget: Budget, **job) -> tuple[int, int] | None:
    """The largest image size of ``lay``'s aspect (on the downsampling grid) whose job fits ``budget``, whole or
    tiled; None when not even one token's size fits."""
    f = model.first_stage.downsample_factor
    h, w = lay.grid_hw
    long = max(h, w)

    def size_at(t: int) -> tuple[int, int]:
        return max(1, round(h * t / long)) * f, max(1, round(w * t / long)) * f

    def need(t: int) -> float:
        try:
            small = layout(model, size_at(t), lay.window_hw, cond_encoding=lay.cond_encoding)
        except ValueError:
            return float("inf")
        parts = job_bytes(model, replace(small, decode_tile=None), **job)
        if peak(parts) <= budget.bytes:
            return 0
        b = max(1, min(job.get("batch", 1), job.get("num", 1)))
        return 0 if _tiled(model, small, budget, b, parts) is not None else float("inf")

    t = largest_fitting(need, budget.bytes, 1, long)
    return None if t is None else size_at(t)


def size_fits(model: Net2NetTransformer, image_hw: tuple[int, int], budget: Budget, **job) -> bool:
    """Whether a job at ``image_hw`` can be planned and fits ``budget`` (the web app's list of sizes)."""
    try:
        fit_budget(model, layout(model, image_hw), budget, **job)
    except (ValueError, OverBudget):
        return False
    return True
