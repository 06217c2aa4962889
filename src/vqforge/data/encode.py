"""Pre-tokenizing a dataset once (``vqforge encode``): first-stage tokens, class labels and condition tokens.

:func:`encode_job` is ``vqforge encode`` (models by name, checks before any work); :func:`encoding_stages` picks
the models to encode with; :func:`encode_data` encodes images of a folder, list or glob, tar shards or
Fashion-MNIST (crops; labels; paired maps); :func:`encode_dataset` encodes any indexable of images and writes the
token dataset (format in :mod:`vqforge.data.tokens`).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from ..io import VQForgeError
from .shards import is_shard_spec
from .tokens import write_tokens


class _Pairs:
    """(index, image, raw condition or 0, why) items for the encoding DataLoader; an unreadable image is
    ``(index, None, None, its one-line error)``: skipped, as training skips it (:func:`_good_items`)."""

    def __init__(self, images, conds=None):
        self.images, self.conds = images, conds

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        try:
            x = self.images[i]
        except VQForgeError as e:  # the image file itself: skipped with a warning (a missing paired map still fails)
            return i, None, None, str(e)
        return i, x, (torch.as_tensor(self.conds[i]) if self.conds is not None else 0), ""


def _good_items(items):
    """Collate the readable items of a batch: (their indices, images, conditions, [(index, why) skipped])."""
    from torch.utils.data import default_collate

    good = [it for it in items if it[1] is not None]
    skipped = [(it[0], it[3]) for it in items if it[1] is None]
    if not good:
        return [], None, None, skipped
    ids, xs, conds = [it[0] for it in good], [it[1] for it in good], [it[2] for it in good]
    return ids, default_collate(xs), default_collate(conds), skipped


def _worker_errors(loader):
    """Iterate a DataLoader; a :class:`VQForgeError` raised in a worker process comes back as its own one line
    (the DataLoader re-raises it with the worker's traceback in the message)."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except VQForgeError as e:
            last = str(e).strip().splitlines()[-1]
            raise VQForgeError(last.split("VQForgeError: ", 1)[-1]) from None
        yield batch


@torch.no_grad()
def encode_dataset(first_stage, images, out, *, labels=None, label_names=None, condition=None, cond_inputs=None,
                   source_model="", cond_source="", batch_size=32, device="cpu", progress=True, files=None,
                   workers=0) -> Path:
    """Encode an indexable of images (each (C, H, W) in [-1, 1]) and write a token dataset to ``out``.

    ``condition``: a spatial conditioning mode with its stage (:class:`~vqforge.models.conditioning.Condition`)
    whose tokens are written too; ``cond_inputs``: an indexable of its raw data per image (label maps (H, W),
    depth (1, H, W)) when it does not come from the images. ``workers``: DataLoader processes that decode and
    resize images in parallel. Returns the output path.
    """
    from tqdm.auto import tqdm

    first_stage = first_stage.to(device).eval()
    if condition is not None:
        condition.stage.to(device).eval()
    if isinstance(images, torch.utils.data.IterableDataset):  # tar shards
        return _encode_stream(first_stage, images, out, label_names, source_model, batch_size, device, progress,
                              workers)
    image_hw = None
    toks, ctoks, kept = [], [], []
    grid = None
    loader = torch.utils.data.DataLoader(_Pairs(images, cond_inputs), batch_size=batch_size, shuffle=False,
                                         num_workers=workers, collate_fn=_good_items)
    named: set[str] = set()
    for ids, x, raw, skipped in tqdm(_worker_errors(loader), total=len(loader), disable=not progress, desc="encode",
                                     unit="batch"):
        for _, why in skipped:  # as training: each unreadable file named once, then counted
            if why not in named:
                named.add(why)
                warnings.warn(f"unreadable image skipped ({why})", stacklevel=2)
        if not ids:
            continue
        kept += ids
        image_hw = image_hw or tuple(x.shape[-2:])
        x = x.to(device)
        idx = first_stage.encode_to_indices(x)  # (B, h, w)
        grid = tuple(idx.shape[1:])
        toks.append(idx.flatten(1).cpu().numpy())
        if condition is not None:
            c = condition.build_input(x, raw.to(device) if cond_inputs is not None else None)
            ctoks.append(condition.encode(c).cpu().numpy())  # (B, hc*wc)
    if not kept:
        raise VQForgeError(f"{files[0] if files else '<data>'}: no usable images ({len(images)} items, none could "
                           f"be read)")
    if len(kept) < len(images):
        print(f"vqforge: skipped {len(images) - len(kept)} of {len(images)} item(s): unreadable image files "
              f"(named above)", file=sys.stderr)
        labels = None if labels is None else [labels[i] for i in kept]
        files = None if files is None else [files[i] for i in kept]
    cond = None
    if condition is not None:
        cond = {"mode": condition.name, "grid": list(condition.grid(image_hw)), "n_codes": int(condition.stage.n_codes),
                "source_model": str(cond_source)}
    return write_tokens(out, np.concatenate(toks), grid, first_stage.n_codes, image_hw, str(source_model),
                        labels=None if labels is None else np.asarray(labels), label_names=label_names,
                        cond_tokens=np.concatenate(ctoks) if ctoks else None, cond=cond, files=files)


@torch.no_grad()
def _encode_stream(first_stage, images, out, label_names, source_model, batch_size, device, progress, workers) -> Path:
    """Encode the ``(image, 0, label, source)`` items of an iterable dataset (tar shards:
    :class:`vqforge.data.shards.ShardCrops`) and write the token dataset, labels and sources in the order read."""
    from tqdm.auto import tqdm

    toks, labels, files = [], [], []
    image_hw = grid = None
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, num_workers=workers)
    for x, _, label, source in tqdm(_worker_errors(loader), disable=not progress, desc="encode", unit="batch"):
        image_hw = image_hw or tuple(x.shape[-2:])
        idx = first_stage.encode_to_indices(x.to(device))  # (B, h, w)
        grid = tuple(idx.shape[1:])
        toks.append(idx.flatten(1).cpu().numpy())
        labels.extend(int(v) for v in label)
        files.extend(source)
    if image_hw is None:
        raise VQForgeError("encode: the shards hold no images")
    return write_tokens(out, np.concatenate(toks), grid, first_stage.n_codes, image_hw, str(source_model),
                        labels=np.asarray(labels) if label_names is not None else None, label_names=label_names,
                        files=files)


def encoding_stages(model, source: str, cond_stage=None, cond_source: str = "", mode: str | None = None,
                    size: int | None = None, **settings):
    """What ``vqforge encode`` encodes with: (the first stage, the condition or None, where the condition comes
    from, the image size).

    ``model`` (loaded from ``source``): a VQGAN, or a transformer, whose first stage is used and, unless
    ``cond_stage`` is given, its own condition stage. ``cond_stage`` (from ``cond_source``): a condition-stage
    VQGAN, encoded as conditioning ``mode`` (default: the one its input channels suggest) with the mode's other
    ``settings`` (``n_labels``, ``lowres_factor``). ``size`` defaults to the size the model was trained at.
    Anything else is one :class:`VQForgeError` naming its source.
    """
    from ..models.conditioning import StageCondition, stage_condition
    from ..models.transformer import Net2NetTransformer
    from ..models.vqgan import VQGAN

    condition, where = None, cond_source
    size = size or model.trained_hw[0]
    if isinstance(model, Net2NetTransformer):
        if isinstance(model.condition, StageCondition) and cond_stage is None:
            condition, where = model.condition, source  # the transformer's own condition stage
        model = model.first_stage
    if not isinstance(model, VQGAN):
        raise VQForgeError(f"{source}: not a VQGAN or transformer model")
    if cond_stage is not None:
        if not isinstance(cond_stage, VQGAN):
            raise VQForgeError(f"{cond_source}: not a VQGAN model")
        try:
            condition = stage_condition(cond_stage, mode, (size, size), **settings)
        except ValueError as e:
            raise VQForgeError(f"{cond_source}: {e}") from None
    return model, condition, where, size


def encode_data(first_stage, data: str, out, *, size: int, condition=None, cond_data: str | None = None,
                labels: str | None = None, crops: int = 1, resize_max: int = 0, seed: int = 0,
                limit: int | None = None, source_model: str = "", cond_source: str = "", batch_size: int = 32,
                device="cpu", workers: int = 0, progress: bool = True) -> tuple[Path, int]:
    """Encode ``data`` to a token dataset in ``out``; returns (the path, the number of token rows).

    ``data``: an image folder, ``.txt`` list or glob, tar shards (``DIR/shard-{000000..000099}.tar``, their
    classes with ``labels='shards'``), or ``fashion-mnist[:train|test]`` (its labels included).
    Images are resized (smallest side) and cropped to ``size``: one centre crop each, or ``crops`` random crops at
    scales up to ``resize_max`` (several windows of each image, which sliding-window sampling needs). ``labels``:
    ``folders`` (ImageFolder sub-folder names) or a file of ``relative/path label`` lines. ``condition``: a
    spatial conditioning mode with its stage; modes with paired maps read them from ``cond_data`` (same relative
    paths as the images, ``.png`` suffix), cut as their images.
    """
    from .tokens import read_meta

    channels = first_stage.config.ddconfig.in_channels
    f = first_stage.downsample_factor
    if size % f:
        raise VQForgeError(f"{source_model or 'first stage'}: image size {size} is not a multiple of the model's "
                           f"downsampling factor {f} (e.g. {max(f, size // f * f)})")
    cut = dict(size=size, channels=channels, crops=crops, resize_max=resize_max, seed=seed, limit=limit)
    if is_shard_spec(data):
        images, label_names = _shard_images(data, condition, labels, **cut)
        path = encode_dataset(first_stage, images, out, label_names=label_names, source_model=source_model,
                              batch_size=batch_size, device=device, progress=progress, workers=workers)
        return path, int(read_meta(path)["n"])
    if data.split(":", 1)[0] == "fashion-mnist":
        images, label_ids, label_names = _fashion_images(data, condition, size, channels, limit)
        cond_inputs = files_out = None
    else:
        images, label_ids, label_names, cond_inputs, files_out = _folder_images(data, condition, cond_data, labels,
                                                                                **cut)
    path = encode_dataset(first_stage, images, out, labels=label_ids, label_names=label_names, condition=condition,
                          cond_inputs=cond_inputs, source_model=source_model, cond_source=cond_source,
                          batch_size=batch_size, device=device, progress=progress, files=files_out, workers=workers)
    return path, int(read_meta(path)["n"])  # the rows written: unreadable images are skipped


def _shard_images(data: str, condition, labels: str | None, *, size: int, channels: int, crops: int,
                  resize_max: int, seed: int, limit: int | None):
    """(the crops of tar shards ``data``, their class names or None) for :func:`encode_data`."""
    from .shards import ShardCrops, expand, index_of

    if condition is not None:
        raise VQForgeError(f"{data}: condition tokens are encoded from an image folder with --cond-data, not "
                           f"from shards; shard the token dataset afterwards (vqforge shard --data TOKENS)")
    shards = expand(data)
    if labels not in (None, "folders", "shards"):
        raise VQForgeError(f"{data}: labels of shards are the classes stored in them (--labels shards)")
    label_names = index_of(shards).get("label_names") if labels else None
    if labels and label_names is None:
        raise VQForgeError(f"{data}: these shards hold no classes (shard with --labels folders)")
    images = ShardCrops(shards, size, channels, crops, resize_max, seed, labels=label_names is not None, limit=limit)
    return images, label_names


def _fashion_images(data: str, condition, size: int, channels: int, limit: int | None):
    """(Fashion-MNIST's images at ``size``, their labels, the class names) for :func:`encode_data`."""
    from .fashion_mnist import CLASS_NAMES, load_fashion_mnist, to_model_images

    if condition is not None:
        raise VQForgeError(f"{data}: Fashion-MNIST has no condition maps; encode it without --cond-stage")
    imgs, lab = load_fashion_mnist(data.split(":", 1)[1] if ":" in data else "train")
    imgs, lab = (imgs[:limit], lab[:limit]) if limit else (imgs, lab)
    return to_model_images(imgs, size, channels), lab, list(CLASS_NAMES)


def _folder_images(data: str, condition, cond_data: str | None, labels: str | None, *, size: int, channels: int,
                   crops: int, resize_max: int, seed: int, limit: int | None):
    """(the crops of an image folder, list or glob, their label ids, the label names, the raw condition inputs,
    the source file of each crop) for :func:`encode_data`; labels and conditions None where there are none."""
    from .images import find_images
    from .paired import PairedCrops, folder_labels, read_label_file

    root = Path(data)
    files = find_images(data)[:limit] if limit else find_images(data)
    maps = None
    if condition is not None and condition.raw_input == "map":
        if not cond_data:
            raise VQForgeError(f"{condition.name} condition tokens need --cond-data DIR with the paired maps")
        base = root if root.is_dir() else files[0].parent
        maps = [Path(cond_data) / f.relative_to(base).with_suffix(".png") for f in files]
    images = PairedCrops(files, size, channels, maps, condition, crops, resize_max, seed)
    cond_inputs = images.maps() if maps is not None else None
    files_out = [str(f) for f in files for _ in range(crops)]
    label_ids = label_names = None
    if labels == "folders":
        label_ids, label_names = folder_labels(files, root)
    elif labels:
        label_ids, label_names = read_label_file(labels, files, root)
    if label_ids is not None:
        label_ids = [lab for lab in label_ids for _ in range(crops)]
    return images, label_ids, label_names, cond_inputs, files_out


def encode_job(model: str | Path, data: str, out: str | Path, *, cond_stage: str | Path | None = None,
               cond: str | None = None, n_labels: int | None = None, lowres_factor: int | None = None,
               size: int | None = None, resize_max: str = "0", crops: int = 1, labels: str | None = None,
               cond_data: str | None = None, seed: int = 0, batch_size: int = 32, limit: int | None = None,
               workers: int = 0, device: str = "auto", progress: bool = True, trust: bool = False,
               max_memory: str | None = None) -> tuple[Path, int]:
    """``vqforge encode``: load the models at ``model`` (and ``cond_stage``: :func:`vqforge.api.load`), pick
    what to encode with (:func:`encoding_stages`), refuse a job over the memory budget (``max_memory``, as
    ``--max-memory``) and encode ``data`` into ``out`` (:func:`encode_data`). ``resize_max``: pixels, or ``Nx``
    for N times ``size``. Every refusal comes before any work; returns (the path, the number of token rows)."""
    from ..api import load
    from ..devices import resolve_device
    from ..io import check_output_dir
    from ..memory import Budget
    from .tokens import is_token_dir

    if batch_size < 1 or workers < 0:
        raise VQForgeError(f"--batch-size must be >= 1 and --workers >= 0, got {batch_size} and {workers}")
    dev = resolve_device(device)
    check_output_dir(out, "token dataset", is_token_dir)  # refused before any work, not after encoding
    first = load(model, trust=trust)
    stage = load(cond_stage, trust=trust) if cond_stage else None
    settings = {k: v for k, v in (("n_labels", n_labels), ("lowres_factor", lowres_factor)) if v}
    first, condition, cond_source, size = encoding_stages(first, model, stage, cond_stage or "", cond, size,
                                                          **settings)
    rmax = _pixels(resize_max, size, "--resize-max")
    check_memory(first, condition, size, rmax, batch_size, Budget.from_option(max_memory, dev))
    return encode_data(first, data, out, size=size, condition=condition, cond_data=cond_data, labels=labels,
                       crops=crops, resize_max=rmax, seed=seed, limit=limit, source_model=model,
                       cond_source=cond_source, batch_size=batch_size, device=dev, workers=workers,
                       progress=progress)


def _pixels(text: str, size: int, what: str) -> int:
    """A side in pixels: 'PX', or 'Nx' for N times ``size``."""
    from .images import size_multiple

    times = size_multiple(text)
    try:
        value = round(times * size) if times is not None else int(text.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise VQForgeError(f"{what} {text!r}: expected pixels (e.g. 96) or a multiple of --size (e.g. 3x)")
    return value


def check_memory(model, condition, size: int, resize_max: int, batch: int, budget) -> None:
    """Refuse in one line (:class:`vqforge.memory.OverBudget`), before any image is read, an encoding whose
    batches of ``size`` crops (and photos resized to ``resize_max``) would not fit ``budget``; the refusal names
    the largest --size that fits."""
    from ..memory import largest_fitting, refusal
    from ..models.footprint import vqgan_encode_job_bytes

    stage = getattr(condition, "stage", None)
    cond = stage.config if stage is not None else None

    def need(side: int, rmax: int) -> int:
        return vqgan_encode_job_bytes(model.config, side, batch, rmax, cond)

    if need(size, resize_max) <= budget.bytes:
        return
    f = model.downsample_factor
    fit = largest_fitting(lambda t: need(t * f, 0), budget.bytes, 1, max(1, size // f))
    what = f"--size {size}" + (f" --resize-max {resize_max}" if resize_max > size else "") + f" (--batch-size {batch})"
    raise refusal(what, need(size, resize_max), budget, None if fit is None else f"--size {fit * f}")
