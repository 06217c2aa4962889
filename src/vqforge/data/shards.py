"""Webdataset tar shards: a dataset as a few hundred large files instead of a million small ones.

Writing (``vqforge shard``, :mod:`.shard_writer`): images (the original file's bytes, unchanged, under its
extension), with their class (``cls``, from sub-folder names) and an optional condition map (``map.png`` /
``map.npy``, paired by file name); or the rows of a token dataset (``tokens.npy``, ``cls``, ``cond.npy``,
``src.txt``). Members follow the webdataset convention (``KEY.EXT``, a sample's members consecutive) and are
written by the ``webdataset`` library (an optional extra: ``pip install 'vqforge[shards]'``). A held-out
validation set goes to ``val-NNNNNN.tar`` (whole source images on one side), and ``shards.json`` indexes it all:
shards, samples per shard, class names, the token dataset's meta. The folder is written whole or not at all.

Reading (:class:`ShardStream`, ``--data 'DIR/shard-{000000..000099}.tar'`` or ``--data DIR``): a brace pattern
names the shards (a folder means all of its training shards). Each epoch the shard order is shuffled by
(seed, epoch), split over the processes of a distributed run (rank ``r`` reads shards ``r, r + world, ...``),
then over the data-loader workers of each process; each worker streams its shards and shuffles through a
buffer. Within an epoch every sample is read exactly once across all processes. Everything random is a pure
function of (seed, epoch, rank, worker), so a stream resumes at the sample after the last one a checkpoint
counted (:meth:`ShardStream.set_skip`): samples before it are read but not decoded.
"""

from __future__ import annotations

import io
import random
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from ..io import VQForgeError, read_json

INDEX = "shards.json"
FORMAT = "vqforge-shards"
#: the index ``kind`` of shards that hold a token dataset (else they hold images)
TOKEN_SHARDS = "tokens"
INSTALL = "pip install 'vqforge[shards]' (or pip install webdataset)"
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif", "ppm")


def webdataset():
    """The ``webdataset`` module (a one-line error naming the install when it is missing)."""
    try:
        import webdataset
    except ImportError:
        raise VQForgeError(f"tar shards need the webdataset package: {INSTALL}") from None
    return webdataset


# ============================================================================================== naming
def is_shard_spec(spec: str | Path) -> bool:
    """Whether ``--data`` names tar shards: a ``.tar`` path or brace pattern, or a folder ``vqforge shard`` wrote."""
    s = str(spec)
    return s.endswith(".tar") or (Path(s).is_dir() and (Path(s) / INDEX).is_file())


def pattern(prefix: str, n: int) -> str:
    """The brace pattern of ``n`` shards named ``PREFIX-NNNNNN.tar``."""
    return f"{prefix}-{{{0:06d}..{n - 1:06d}}}.tar" if n > 1 else f"{prefix}-000000.tar"


def expand(spec: str | Path) -> list[Path]:
    """The shard files ``spec`` names (a brace pattern like ``DIR/shard-{000000..000099}.tar``, one ``.tar``, or a
    folder with ``shards.json``: its training shards). Every one must exist (one line naming the first missing)."""
    s = str(spec)
    if Path(s).is_dir():
        index = read_index(Path(s))
        files = [Path(s) / e["name"] for e in index["train"]]
    else:
        from braceexpand import braceexpand  # installed with webdataset

        webdataset()
        files = [Path(f) for f in braceexpand(s)]
    if not files:
        raise VQForgeError(f"{s}: names no shards")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise VQForgeError(f"{missing[0]}: no such shard ({len(missing)} of the {len(files)} shards {s} names are "
                           f"missing)")
    return files


def read_index(folder: Path) -> dict[str, Any]:
    """``shards.json`` of a folder ``vqforge shard`` wrote (checked); {} when there is none."""
    path = Path(folder) / INDEX
    if not path.is_file():
        return {}
    index = read_json(path, "shard index")
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise VQForgeError(f"{path}: not a vqforge shard index")
    return index


def index_of(shards: list[Path]) -> dict[str, Any]:
    """The index of the folder the shards are in ({} for shards written by something else)."""
    return read_index(shards[0].parent)


# ============================================================================================== reading
def read_samples(shards: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """The raw samples of ``shards`` in order: ``{"__key__", "__url__", EXT: bytes, ...}`` (webdataset's reader)."""
    wds = webdataset()
    yield from wds.tarfile_to_samples()({"url": str(s)} for s in shards)


def _mix(*parts: int | str) -> int:
    """A 63-bit seed from the parts (no python ``hash()``: stable across processes)."""
    return zlib.crc32(repr(parts).encode()) * 0x9E3779B1 % (2**63 - 1)


def buffer_shuffle(items: Iterable[Any], size: int, rng: random.Random) -> Iterator[Any]:
    """Shuffle a stream through a buffer of ``size`` items (1 or less: in order)."""
    if size <= 1:
        yield from items
        return
    buf: list[Any] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = rng.randrange(size)
        buf[j], item = item, buf[j]
        yield item
    rng.shuffle(buf)
    yield from buf


class ShardStream(torch.utils.data.IterableDataset):
    """Samples of tar shards, decoded by ``decode(raw, rng) -> item | None`` (None: an unreadable sample, skipped
    with a warning), split by rank and worker, shuffled through a buffer, resumable (see the module doc).

    Items carry ``__key__`` (``shard.tar/KEY``), ``__worker__`` (the worker that read it) and ``__pos__`` (its
    place in that worker's stream), which :class:`vqforge.train.stream.ShardBatchStream` takes off the batch to
    keep each worker's position.
    """

    def __init__(self, shards: list[Path], decode: Callable[[dict[str, Any], random.Random], dict[str, Any] | None],
                 seed: int = 0, rank: int = 0, world_size: int = 1, buffer: int = 1000, shuffle: bool = True,
                 source: str = "<shards>"):
        self.shards, self.decode, self.seed = list(shards), decode, seed
        self.rank, self.world_size, self.buffer, self.shuffle, self.source = rank, world_size, buffer, shuffle, source
        self.epoch = 0
        self.skip: list[int] = []
        self.place(seed, rank, world_size)

    def place(self, seed: int, rank: int, world_size: int) -> None:
        """Set the run's seed and this process's place in it (the training loop calls this)."""
        if len(self.shards) < world_size:
            raise VQForgeError(f"{self.source}: {len(self.shards)} shard(s) for {world_size} processes; every process "
                               f"needs at least one (write smaller shards: vqforge shard --per-shard N)")
        self.seed, self.rank, self.world_size = seed, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_skip(self, consumed: list[int]) -> None:
        """Per worker, how many of this epoch's samples were already used (they are read, not decoded)."""
        self.skip = list(consumed)

    def rank_shards(self, epoch: int) -> list[Path]:
        """This process's shards in ``epoch``: the epoch's shard order, every ``world_size``-th from ``rank``."""
        order = list(self.shards)
        if self.shuffle:
            random.Random(_mix(self.seed, epoch)).shuffle(order)
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = self.rank_shards(self.epoch)[worker::workers]
        rng = random.Random(_mix(self.seed, self.epoch, self.rank, worker))
        skip = self.skip[worker] if worker < len(self.skip) else 0
        stream = buffer_shuffle(read_samples(mine), self.buffer if self.shuffle else 1, rng)
        for pos, raw in enumerate(stream):
            if pos < skip:
                continue
            key = f"{Path(raw['__url__']).name}/{raw['__key__']}"
            try:
                item = self.decode(raw, random.Random(_mix(self.seed, self.epoch, key)))
            except Exception as e:  # noqa: BLE001 - an unreadable sample never stops a run
                warnings.warn(f"{key}: unreadable sample skipped ({type(e).__name__}: {str(e)[:80]})", stacklevel=2)
                item = None
            if item is not None:  # __pos__: the sample's place in this worker's stream (what a resume skips)
                yield {**item, "__key__": key, "__worker__": worker, "__pos__": pos}


# ---------------------------------------------------------------------------------------------- decoders
def image_member(raw: dict[str, Any]) -> bytes:
    for ext in (*IMAGE_EXTS, "img"):
        if ext in raw:
            return raw[ext]
    raise VQForgeError(f"{raw.get('__key__')}: no image in this sample (members: {', '.join(sorted(raw))})")


@dataclass(frozen=True)
class DecodeImage:
    """A shard sample -> ``{"image": (C, size, size) in [-1, 1][, "label"]}``, cut by the one crop rule."""

    size: int
    crop: str = "random"
    flip: bool = False
    resize: int = 0
    resize_max: int = 0
    channels: int = 3
    labels: bool = False

    def __call__(self, raw: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        from PIL import Image

        from ..imageio import channels_mode, open_image, pil_to_tensor, to_mode
        from .images import resize_crop

        name = f"{Path(raw.get('__url__', '')).name}/{raw.get('__key__')}"
        img = to_mode(open_image(image_member(raw), name), channels_mode(self.channels))  # the one image reader
        img = resize_crop(img, self.size, self.crop, rng, self.resize, self.resize_max, source=name)
        if self.flip and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        item: dict[str, Any] = {"image": pil_to_tensor(img)}
        if self.labels:
            item["label"] = torch.tensor(int(raw["cls"]))
        return item


@dataclass(frozen=True)
class DecodeMap:
    """A shard sample's condition map (``map.png`` / ``map.npy``, else the sample's image: shards of a folder of
    maps) -> ``{condition.raw_input: raw data}``, as :class:`vqforge.data.maps.ConditionMaps` cuts a map file
    (for training a condition stage on shards)."""

    condition: Any
    size: int
    random_crop: bool = True
    label_shift: int = 0
    resize_max: int = 0

    def __call__(self, raw: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        import tempfile

        from PIL import Image

        from .images import resize_crop

        ext = next((k.split(".", 1)[1] for k in raw if k.startswith("map.")), None)
        data = raw[f"map.{ext}"] if ext else image_member(raw)
        ext = ext or next(e for e in (*IMAGE_EXTS, "img") if e in raw)
        name = f"{Path(raw.get('__url__', '')).name}/{raw.get('__key__')}"
        # a mode reads its maps from files (.png label ids, .npy or RGBA-packed depth): one short-lived file each
        with tempfile.NamedTemporaryFile(suffix=f".{ext}") as f:
            f.write(data)
            f.flush()
            img = self.condition.read_map(Path(f.name))
        img = resize_crop(img, self.size, "random" if self.random_crop else "center", rng,
                          resize_max=self.resize_max if self.random_crop else 0, resample=self.condition.map_filter,
                          source=name)
        if self.label_shift:
            img = Image.fromarray(((np.asarray(img).astype(np.int64) + self.label_shift) % 256).astype(np.uint8))
        return {self.condition.raw_input: self.condition.raw_from_map(img, name)}


def decode_tokens(raw: dict[str, Any], rng: random.Random) -> dict[str, Any]:  # noqa: ARG001 - no augmentation
    """A token shard sample -> ``{"tokens": (N,) int64[, "label"][, "cond": (Tc,) int64]}`` (as
    :class:`~vqforge.data.tokens.TokenDataset`)."""
    item = {"tokens": torch.from_numpy(np.load(io.BytesIO(raw["tokens.npy"])).astype(np.int64))}
    if "cls" in raw:
        item["label"] = torch.tensor(int(raw["cls"]))
    if "cond.npy" in raw:
        item["cond"] = torch.from_numpy(np.load(io.BytesIO(raw["cond.npy"])).astype(np.int64))
    return item


class SampleList(torch.utils.data.Dataset):
    """A few decoded samples in memory (a validation set from shards); keys may be ``(index, seed)`` pairs."""

    def __init__(self, items: list[dict[str, Any]], source: str):
        if not items:
            raise VQForgeError(f"{source}: no samples")
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key) -> dict[str, Any]:
        return self.items[int(key[0]) if isinstance(key, (tuple, list)) else int(key)]


def shard_samples(shards: list[Path], decode: Callable, limit: int, source: str) -> SampleList:
    """The first ``limit`` samples of ``shards``, decoded, in order (a validation set)."""
    items = []
    for raw in read_samples(shards):
        if len(items) >= limit:
            break
        item = decode(raw, random.Random(0))
        if item is not None:
            items.append(item)
    return SampleList(items, source)


def validation_samples(shards: list[Path], decode: Callable, limit: int) -> SampleList | None:
    """The held-out samples ``vqforge shard --val-fraction`` wrote beside ``shards`` (decoded, in order), or None."""
    index = index_of(shards)
    val = [shards[0].parent / e["name"] for e in index.get("val", [])]
    return shard_samples(val, decode, limit, str(val[0])) if val else None


class ShardCrops(torch.utils.data.IterableDataset):
    """Every sample of ``shards`` in order (split over data-loader workers) as ``(image, 0, label, source)``
    items for ``vqforge encode``: one centre crop each, or ``crops`` random crops at scales up to ``resize_max``
    (seeded by (seed, sample, crop)); ``limit``: at most that many samples."""

    def __init__(self, shards: list[Path], size: int, channels: int = 3, crops: int = 1, resize_max: int = 0,
                 seed: int = 0, labels: bool = False, limit: int | None = None):
        self.shards, self.crops, self.seed, self.limit = list(shards), crops, seed, limit
        self.decode = DecodeImage(size, "center" if crops == 1 else "random", False, 0,
                                  resize_max if crops > 1 else 0, channels, labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int, int, str]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for n, raw in enumerate(read_samples(self.shards)):
            if self.limit is not None and n >= self.limit:
                return
            if n % workers != worker:
                continue
            key = raw.get("src.txt", b"").decode() or f"{Path(raw['__url__']).name}/{raw['__key__']}"
            for c in range(self.crops):
                item = self.decode(raw, random.Random(_mix(self.seed, key, c)))
                yield item["image"], 0, int(item["label"]) if "label" in item else -1, key
