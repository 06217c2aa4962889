"""Pre-tokenized datasets: first-stage codebook indices (and condition tokens / labels) on disk.

Layout of a ``TOKENS_DIR`` (written by ``vqforge encode`` / :func:`write_tokens`)::

    meta.json         {"format": "vqforge-tokens", "format_version": 1,
                       "n": N, "grid": [h, w], "n_codes": K, "image_size": [H, W],
                       "source_model": "<first-stage path>", "dtype": "int16" | "int32",
                       "cond": null | {"mode": "segmentation" | "depth" | "edges" | "lowres" | ...,
                                       "grid": [hc, wc], "n_codes": Kc, "source_model": "<cond-stage path>"},
                       "label_names": null | ["name of label 0", ...],
                       "files": null | "files.txt"}
    tokens.npy        (N, h*w) image tokens in raster order (int16 when K <= 32767, else int32)
    labels.npy        (N,) int64 class labels (present when label_names is not null)
    cond_tokens.npy   (N, hc*wc) condition tokens in raster order (present when cond is not null)
    files.txt         optional: the source file of each row, one a line

Arrays are plain ``.npy`` files opened memory-mapped (``np.load(mmap_mode="r")``), so a dataset larger
than memory is read lazily. Bits per dim of a model on these tokens: the mean cross-entropy (nats per
token) times ``h*w / (H*W*3) / ln 2``; :func:`bits_per_dim` does it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import VQForgeError, atomic_dir, atomic_write, write_json, write_text

FORMAT = "vqforge-tokens"
FORMAT_VERSION = 1


def _save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def token_dtype(n_codes: int) -> np.dtype:
    """The smallest integer dtype that holds ids below ``n_codes``."""
    return np.dtype(np.int16) if n_codes <= np.iinfo(np.int16).max else np.dtype(np.int32)


def write_tokens(out_dir: str | Path, tokens: np.ndarray, grid: tuple[int, int], n_codes: int,
                 image_size: tuple[int, int], source_model: str = "", labels: np.ndarray | None = None,
                 label_names: list[str] | None = None, cond_tokens: np.ndarray | None = None,
                 cond: dict[str, Any] | None = None, files: list[str] | None = None) -> Path:
    """Write a token dataset (see the module docstring), complete or not at all (:func:`vqforge.io.atomic_dir`).

    An existing token dataset at ``out_dir`` is replaced; any other non-empty folder is refused.
    """
    with atomic_dir(out_dir, "token dataset", replaceable=is_token_dir) as tmp:
        _write_token_files(tmp, tokens, grid, n_codes, image_size, source_model, labels, label_names, cond_tokens,
                           cond, files)
    return Path(out_dir)


def _write_token_files(out: Path, tokens: np.ndarray, grid: tuple[int, int], n_codes: int,
                       image_size: tuple[int, int], source_model: str, labels: np.ndarray | None,
                       label_names: list[str] | None, cond_tokens: np.ndarray | None, cond: dict[str, Any] | None,
                       files: list[str] | None) -> None:
    tokens = np.asarray(tokens)
    n = len(tokens)
    if tokens.shape != (n, grid[0] * grid[1]):
        raise ValueError(f"tokens of shape {tokens.shape} do not match grid {grid}")
    _save_npy(out / "tokens.npy", tokens.astype(token_dtype(n_codes)))
    if labels is not None:
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} token rows")
        _save_npy(out / "labels.npy", np.asarray(labels, dtype=np.int64))
        label_names = list(label_names) if label_names is not None else [str(i) for i in range(int(np.max(labels)) + 1)]
    if cond_tokens is not None:
        if cond is None or len(cond_tokens) != n:
            raise ValueError("cond_tokens need a cond description and one row per image")
        _save_npy(out / "cond_tokens.npy", np.asarray(cond_tokens).astype(token_dtype(int(cond["n_codes"]))))
    if files is not None:
        write_text(out / "files.txt", "".join(f"{f}\n" for f in files))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "n": n, "grid": list(grid), "n_codes": int(n_codes),
            "image_size": list(image_size), "source_model": str(source_model), "dtype": str(token_dtype(n_codes)),
            "cond": cond, "label_names": label_names if labels is not None else None,
            "files": "files.txt" if files is not None else None}
    write_json(out / "meta.json", meta)


def is_token_dir(path: str | Path) -> bool:
    return (Path(path) / "meta.json").is_file() and (Path(path) / "tokens.npy").is_file()


def read_meta(path: str | Path) -> dict[str, Any]:
    """``meta.json`` of a token dataset, checked."""
    p = Path(path) / "meta.json"
    try:
        meta = json.loads(p.read_text())
    except FileNotFoundError:
        raise VQForgeError(f"{p}: not a token dataset (no meta.json; make one with `vqforge encode`)") from None
    except json.JSONDecodeError as e:
        raise VQForgeError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise VQForgeError(f"{p}: not a vqforge token dataset")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise VQForgeError(f"{p}: format_version {meta.get('format_version')} is newer than this vqforge reads")
    return meta


def _load_npy(path: Path, rows: int) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise VQForgeError(f"{path}: missing from the token dataset") from None
    except ValueError as e:
        raise VQForgeError(f"{path}: cannot read ({e})") from None
    if len(arr) != rows:
        raise VQForgeError(f"{path}: {len(arr)} rows, meta.json says {rows}")
    return arr


class TokenDataset(torch.utils.data.Dataset):
    """Items ``{"tokens": (h*w,) int64, ["label": int64], ["cond": (Tc,) int64]}`` of a token dataset.

    ``indices`` selects a subset of rows (e.g. a train/val split). Keys may be ``(index, seed)`` pairs.
    """

    def __init__(self, path: str | Path, indices: np.ndarray | list[int] | None = None):
        self.path = Path(path)
        self.meta = read_meta(path)
        n = int(self.meta["n"])
        self.tokens = _load_npy(self.path / "tokens.npy", n)
        self.labels = _load_npy(self.path / "labels.npy", n) if self.meta.get("label_names") is not None else None
        self.cond = _load_npy(self.path / "cond_tokens.npy", n) if self.meta.get("cond") else None
        self.indices = np.arange(n) if indices is None else np.asarray(indices)

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.meta["grid"])

    @property
    def n_codes(self) -> int:
        return int(self.meta["n_codes"])

    @property
    def label_names(self) -> list[str] | None:
        return self.meta.get("label_names")

    def sources(self) -> list[str] | None:
        """The source image of every row (``files.txt``; several rows share one with ``encode --crops``), or None."""
        if not self.meta.get("files"):
            return None
        path = self.path / self.meta["files"]
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise VQForgeError(f"{path}: cannot read ({e.strerror or e})") from None
        if len(lines) != int(self.meta["n"]):
            raise VQForgeError(f"{path}: {len(lines)} lines, meta.json says {self.meta['n']} rows")
        return lines

    def facts(self):
        """What the dataset tells about the condition (:class:`~vqforge.models.conditioning.DataFacts`)."""
        return meta_facts(self.meta)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        i = int(self.indices[int(key[0]) if isinstance(key, (tuple, list)) else int(key)])
        item = {"tokens": torch.from_numpy(np.array(self.tokens[i], dtype=np.int64))}
        if self.labels is not None:
            item["label"] = torch.tensor(int(self.labels[i]))
        if self.cond is not None:
            item["cond"] = torch.from_numpy(np.array(self.cond[i], dtype=np.int64))
        return item


def meta_facts(meta: dict[str, Any]):
    """What a token dataset's ``meta.json`` tells about the condition (:class:`TokenDataset.facts`; token shards
    carry the same meta in their index)."""
    from ..models.conditioning import DataFacts

    cond = meta.get("cond")
    names = meta.get("label_names")
    return DataFacts(image_hw=tuple(meta["image_size"]), label_names=tuple(names) if names is not None else None,
                     pre_encoded=True, cond_mode=cond["mode"] if cond else None,
                     cond_grid=tuple(cond["grid"]) if cond else None, cond_codes=int(cond["n_codes"]) if cond else None)


def held_out_rows(n: int, fraction: float, seed: int, groups: list[str] | None = None) -> np.ndarray:
    """Sorted indices of the rows a transformer run holds out for validation (the others train).

    ``fraction`` of the ``n`` rows (at least one when ``n > 1``), drawn by ``seed``. With ``groups`` (each row's
    source image, :meth:`TokenDataset.sources`), whole images are held out, so that no image has crops on both
    sides (``encode --crops``) and validation measures generalisation to unseen images.
    """
    rng = np.random.default_rng(seed)
    names = sorted(set(groups)) if groups is not None else []
    if len(names) < 2 or len(names) == n:  # one row per image (or nothing to group): rows are drawn directly
        if n <= 1:
            return np.zeros(0, dtype=np.int64)
        return np.sort(rng.permutation(n)[:max(1, int(round(n * fraction)))])
    held = {names[i] for i in rng.permutation(len(names))[:max(1, int(round(len(names) * fraction)))]}
    return np.array([i for i, g in enumerate(groups) if g in held], dtype=np.int64)


def unigram_entropy(tokens: np.ndarray, n_codes: int) -> float:
    """Entropy (nats) of the empirical token distribution: the loss of a model that ignores context."""
    counts = np.bincount(np.asarray(tokens).reshape(-1).astype(np.int64), minlength=n_codes).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def bits_per_dim(nats_per_token: float, grid: tuple[int, int], image_size: tuple[int, int], channels: int = 3) -> float:
    """Convert a mean token cross-entropy to bits per image dimension (pixels x channels)."""
    return nats_per_token * grid[0] * grid[1] / (image_size[0] * image_size[1] * channels) / math.log(2)
