"""Writing a dataset as webdataset tar shards (``vqforge shard``): :func:`shard_dataset`.

The format (members, ``shards.json``, the held-out ``val-NNNNNN.tar``) and the reading side are
:mod:`vqforge.data.shards`'.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..io import VQForgeError, atomic_dir, write_json
from .shards import FORMAT, IMAGE_EXTS, INDEX, TOKEN_SHARDS, pattern, webdataset


@dataclass(frozen=True)
class Written:
    """What :func:`shard_dataset` wrote: the folder, the training pattern, samples and shards per split."""

    out: Path
    pattern: str
    train: int
    val: int
    n_train_shards: int
    n_val_shards: int


def shard_dataset(data: str, out: str | Path, per_shard: int = 1000, labels: bool = False, maps: str | None = None,
                  val_fraction: float = 0.0, seed: int = 0, max_val: int = 1000) -> Written:
    """Write ``data`` (an image folder, file list or glob; or a token dataset) as tar shards in ``out``."""
    from . import tokens as T

    wds = webdataset()
    if per_shard < 1:
        raise VQForgeError(f"--per-shard: must be at least 1, got {per_shard}")
    out = Path(out)
    index: dict[str, Any] = {"format": FORMAT, "format_version": 1, "source": str(data)}
    if T.is_token_dir(data):
        splits = _token_splits(data, val_fraction, seed, index)
    else:
        splits = _image_splits(data, labels, maps, val_fraction, seed, max_val, index)
    with atomic_dir(out, "shard folder", replaceable=lambda p: (p / INDEX).is_file()) as tmp:
        train_shards = _write_split(wds, tmp, "shard", splits[0], per_shard)
        val_shards = _write_split(wds, tmp, "val", splits[1], per_shard)
        if not train_shards:
            raise VQForgeError(f"{data}: nothing to shard")
        index.update(train=train_shards, val=val_shards, pattern=pattern("shard", len(train_shards)),
                     val_pattern=pattern("val", len(val_shards)) if val_shards else None)
        write_json(tmp / INDEX, index)
    return Written(out, str(out / index["pattern"]), sum(s["samples"] for s in train_shards),
                   sum(s["samples"] for s in val_shards), len(train_shards), len(val_shards))


def _token_splits(data: str, val_fraction: float, seed: int, index: dict[str, Any]):
    """(training samples, held-out samples) of the token dataset ``data``; its meta goes into ``index``."""
    from . import tokens as T

    ds = T.TokenDataset(data)
    n = len(ds)
    sources = ds.sources()
    val_rows = set(T.held_out_rows(n, val_fraction, seed, sources).tolist()) if val_fraction > 0 else set()
    index.update(kind=TOKEN_SHARDS, meta=ds.meta, label_names=ds.label_names)

    def rows(val: bool) -> Iterator[dict[str, Any]]:
        for i in range(n):
            if (i in val_rows) != val:
                continue
            item = ds[i]
            buf = io.BytesIO()
            np.save(buf, item["tokens"].numpy().astype(ds.tokens.dtype))
            sample: dict[str, Any] = {"__key__": f"{i:09d}", "tokens.npy": buf.getvalue()}
            if "label" in item:
                sample["cls"] = str(int(item["label"]))
            if "cond" in item:
                cbuf = io.BytesIO()
                np.save(cbuf, item["cond"].numpy())
                sample["cond.npy"] = cbuf.getvalue()
            if sources is not None:
                sample["src.txt"] = sources[i]
            yield sample
    return rows(False), rows(True)


def _image_splits(data: str, labels: bool, maps: str | None, val_fraction: float, seed: int, max_val: int,
                  index: dict[str, Any]):
    """(training samples, held-out samples) of the images of ``data`` (whole source images on one side), with
    their sub-folder classes and condition maps; what they hold goes into ``index``."""
    from .images import find_images, split_files
    from .paired import folder_labels

    files = find_images(data)
    names = None
    label_of: dict[Path, int] = {}
    if labels:
        ids, names = folder_labels(files, data)
        label_of = dict(zip(files, ids))
    maps_dir = Path(maps) if maps else None
    if maps_dir is not None and not maps_dir.is_dir():
        raise VQForgeError(f"{maps}: no such folder of condition maps")
    train, val = split_files(files, val_fraction, seed=seed, min_val=1, max_val=max_val) if val_fraction > 0 \
        else (files, [])
    index.update(kind="images", label_names=names, maps=maps_dir is not None)
    root = Path(data)

    def images(chosen: list[Path], offset: int) -> Iterator[dict[str, Any]]:
        for i, f in enumerate(chosen):
            yield _image_sample(f"{offset + i:09d}", f, label_of.get(f),
                                _find_map(maps_dir, root, f) if maps_dir is not None else None)
    return images(train, 0), images(val, len(train))


def _write_split(wds, out: Path, prefix: str, samples: Iterable[dict[str, Any]], per_shard: int
                 ) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    writer, count = None, 0
    for sample in samples:
        if writer is None or count == per_shard:
            if writer is not None:
                writer.close()
                shards[-1]["samples"] = count
            name = f"{prefix}-{len(shards):06d}.tar"
            shards.append({"name": name, "samples": 0})
            writer, count = wds.TarWriter(str(out / name)), 0
        writer.write(sample)
        count += 1
    if writer is not None:
        writer.close()
        shards[-1]["samples"] = count
    return shards


def _image_sample(key: str, path: Path, label: int | None, map_path: Path | None) -> dict[str, Any]:
    ext = path.suffix.lower().lstrip(".")
    sample: dict[str, Any] = {"__key__": key, ext if ext in IMAGE_EXTS else "img": path.read_bytes(),
                              "src.txt": path.as_posix()}
    if label is not None:
        sample["cls"] = str(label)
    if map_path is not None:
        sample["map." + map_path.suffix.lower().lstrip(".")] = map_path.read_bytes()
    return sample


def _find_map(maps: Path, root: Path, image: Path) -> Path:
    rel = image.relative_to(root) if root.is_dir() else Path(image.name)
    for ext in (".png", ".npy", rel.suffix):
        candidate = maps / rel.with_suffix(ext)
        if candidate.is_file():
            return candidate
    raise VQForgeError(f"{maps}: no condition map for {rel} (expected {rel.with_suffix('.png')} or .npy)")
