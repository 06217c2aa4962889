"""A sampling job's folder: one PNG per image, ``grid.png`` and ``settings.json``, written by one function and
read back by one function.

:func:`save_samples` writes a :class:`~vqforge.sampling.job.SampleResult` whole or not at all
(:func:`vqforge.io.atomic_dir`); :func:`settings_record` is the one schema of ``settings.json`` (every setting,
the layout, the decode path, the timing, and per image its file, condition and condition file); :func:`read_settings`
is its one reader (:func:`listed_files` for ``evaluate samples``, :func:`is_sample_folder` for replacing an old
output). :func:`sample_to_folder` is the whole job of ``vqforge sample`` / ``complete``: check the folder, run,
write.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import __version__
from ..imageio import GRID_NAME, SETTINGS_NAME, save_grid, save_tensor_image
from ..io import atomic_dir, check_output_dir, write_json
from .generate import decode_path
from .job import JobPlan, Notice, SampleResult, run_job
from .request import JobProgress, SampleRequest

#: what an output folder of `vqforge sample` / `complete` is called in errors
OUTPUT_KIND = "sample folder"
#: the ``command`` a sample folder's settings.json names
COMMANDS = ("sample", "complete")


def read_settings(folder: str | Path) -> dict | None:
    """The settings.json record in ``folder`` (:func:`settings_record`'s schema, for a folder `vqforge sample` or
    `complete` wrote: its ``command`` says which), or None without one (no such file, not a JSON object)."""
    try:
        record = json.loads((Path(folder) / SETTINGS_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def listed_files(folder: str | Path) -> list[str] | None:
    """The image files a folder's settings.json lists under ``samples`` (None when it lists none)."""
    record = read_settings(folder)
    samples = record.get("samples") if record is not None else None
    if not isinstance(samples, list):
        return None
    names = [s.get("file") if isinstance(s, dict) else None for s in samples]
    return names if names and all(isinstance(n, str) for n in names) else None


def is_sample_folder(path: str | Path) -> bool:
    """A folder that `vqforge sample` or `complete` wrote (its settings.json says so): it may be replaced."""
    return (read_settings(path) or {}).get("command") in COMMANDS


def classes_used(samples: list[dict]) -> list | None:
    """The classes the samples show, in order of first use (names where the model knows them); None for models
    without classes."""
    seen: list = []
    for entry in samples:
        c = entry.get("class_name", entry.get("class"))
        if c is not None and c not in seen:
            seen.append(c)
    return seen or None


def settings_record(result: SampleResult) -> dict:
    """The settings.json of a job (the one schema; :func:`read_settings` reads it)."""
    request, plan, lay, s = result.request, result.plan, result.plan.layout, result.plan.settings
    device = request.model.transformer.pos_emb.device
    completion = request.completion
    record = {"command": "complete" if completion is not None else "sample", "vqforge_version": __version__,
              "model": request.name, "mode": request.model.mode}
    if completion is not None:
        record.update(input=completion.image_name, mask=completion.mask_name)
    record.update({
        "num": plan.count, "batch_size": plan.batch_size, "size": list(lay.image_hw), "token_grid": list(lay.grid_hw),
        "window": list(lay.window_hw), "sliding_window": lay.sliding, "cond_encoding": lay.cond_encoding,
        "decode_tile": list(lay.decode_tile) if lay.decode_tile else None,
        "cond": str(request.cond) if isinstance(request.cond, (str, Path)) else None,
        "classes": classes_used(result.samples)})
    if completion is not None:
        record.update(masked_tokens=plan.n_steps, paste_back=completion.paste_back)
    record.update({
        "top_k": s.top_k, "top_p": s.top_p, "temperature": s.temperature, "cfg": s.cfg_scale, "greedy": s.greedy,
        "seed": request.seed, "device": str(device), "decode_path": decode_path(device, request.decoding),
        "seconds": round(result.seconds, 3), "tokens_per_second": round(result.tokens_per_second, 1)})
    if plan.reject is not None:
        record["rejection"] = {"classifier": request.rejection.classifier, "acceptance": plan.reject.acceptance,
                               "candidates": plan.reject.n_candidates, "kept": plan.reject.n_kept,
                               "kept_fraction": plan.reject.realised}
    record["samples"] = result.samples
    return record


def save_samples(result: SampleResult, out: str | Path) -> Path:
    """Write ``result`` into the folder ``out`` whole or not at all: ``00000.png``, ...; ``grid.png`` (a
    completion: its masked input first, and ``mask.png``); ``settings.json`` (:func:`settings_record`)."""
    plan = result.plan
    with atomic_dir(out, OUTPUT_KIND, is_sample_folder) as tmp:
        for entry, image in zip(result.samples, result.images):
            save_tensor_image(tmp / entry["file"], image)
        grid = result.images
        if plan.mask is not None:
            save_tensor_image(tmp / "mask.png", plan.mask[None].float() * 2 - 1)
            masked = torch.where(plan.mask[None], torch.zeros_like(plan.image), plan.image).cpu()
            grid = torch.cat((masked[None], grid))
        save_grid(tmp / GRID_NAME, grid)
        write_json(tmp / SETTINGS_NAME, settings_record(result))
    return Path(out)


def check_output(out: str | Path) -> Path:
    """Refuse, before any work, an output folder that :func:`save_samples` would not replace."""
    return check_output_dir(out, OUTPUT_KIND, is_sample_folder)


def sample_to_folder(request: SampleRequest, out: str | Path, progress: JobProgress | None = None,
                     notice: Notice | None = None, plan: JobPlan | None = None) -> SampleResult:
    """Run ``request`` (:func:`~vqforge.sampling.job.run_job`) and write its folder ``out``
    (:func:`save_samples`); a job stopped by its ``progress`` callback leaves no folder."""
    check_output(out)
    result = run_job(request, progress, notice, plan)
    save_samples(result, out)
    return result
