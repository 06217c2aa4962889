"""``taming/NAME``: one of the original's released models, downloaded once and converted once.

:func:`pull` returns the model directory ``$VQFORGE_HOME/models/taming/NAME`` (``model.yaml`` +
``model.safetensors``, the format every vqforge command reads), making it on first use:

1. download the project YAML and ``last.ckpt`` into ``$VQFORGE_HOME/downloads/taming/NAME/`` (resumable,
   verified: :mod:`.download`); files a person put there by hand are used as they are, after the same checks;
2. record each file's size and SHA-256 in ``$VQFORGE_HOME/checksums.json`` the first time (a later download
   that differs is refused);
3. convert them (:func:`vqforge.compat.taming.load_taming`) into the model directory, written whole or not at
   all (:func:`vqforge.io.atomic_dir`), then delete the downloads (``keep_download`` keeps them).

Offline (``VQFORGE_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``) or with the server out of reach, the error is one line
saying which files to download and where to put them.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator


from ..io import VQForgeError, atomic_dir, read_json, write_json
from ..modeldir import MODEL_WEIGHTS, is_model_dir
from .catalogue import TamingModel, catalogue, entry
from .download import DownloadError, download, verify_file
from .home import checksums_file, downloads_dir, models_dir, offline

SOURCE = "taming"
CONFIG_FILE, CHECKPOINT_FILE = "config.yaml", "last.ckpt"


@dataclass(frozen=True)
class Status:
    """Where a catalogue model stands in this cache."""

    model: TamingModel
    path: Path  # its model directory (present when converted)
    converted: bool
    downloading: int  # bytes of the checkpoint downloaded so far when not converted (a .part or a whole file)


def model_path(name: str) -> Path:
    return models_dir(SOURCE) / name


def download_path(name: str) -> Path:
    return downloads_dir(SOURCE) / name


def is_converted(name: str) -> bool:
    path = model_path(name)
    return is_model_dir(path) and (path / MODEL_WEIGHTS).is_file()


def statuses() -> list[Status]:
    """Every catalogue model and whether it is in the cache (``vqforge models --available``)."""
    out = []
    for m in catalogue().values():
        dl = download_path(m.name)
        partial = [p for p in (dl / CHECKPOINT_FILE, dl / (CHECKPOINT_FILE + ".part")) if p.is_file()]
        out.append(Status(m, model_path(m.name), is_converted(m.name), partial[0].stat().st_size if partial else 0))
    return out


def where_to_put(m: TamingModel) -> str:
    """What to download and where to put it, in one line (offline, or the server out of reach)."""
    dl = download_path(m.name)
    if m.direct:
        what = f"download {m.config_url} to {dl / CONFIG_FILE} and {m.checkpoint_url} to {dl / CHECKPOINT_FILE}"
    else:
        folder = f"the folder {m.run} " if m.run else "the folder "
        what = (f"download {folder}from {m.page} and put its configs/*-project.yaml at {dl / CONFIG_FILE} and its "
                f"checkpoints/last.ckpt at {dl / CHECKPOINT_FILE}")
    return f"{what}, then run `vqforge pull {m.name}` again"


def _records() -> dict:
    path = checksums_file()
    if not path.is_file():
        return {}
    data = read_json(path, "record of downloaded files", "; delete it to record afresh")
    return data if isinstance(data, dict) else {}


def _record(key: str, url: str, size: int, sha256: str) -> None:
    records = _records()
    records[key] = {"url": url, "size": size, "sha256": sha256}
    write_json(checksums_file(), records)


def _fetch(m: TamingModel, what: str, url: str | None, filename: str, size: int | None, sha: str | None,
           progress: bool) -> Path:
    """One of the two files, downloaded (or placed by hand) and checked against what is known of it."""
    dl = download_path(m.name)
    dest = dl / filename
    key = f"{SOURCE}/{m.name}/{filename}"
    known = _records().get(key, {})
    size = size if size is not None else known.get("size")
    sha = sha or known.get("sha256")
    if dest.is_file():
        got = verify_file(dest, size, sha)
    else:
        if url is None or offline():
            why = "it has no direct download link" if url is None else "vqforge is offline"
            raise VQForgeError(f"taming/{m.name}: not in the cache and {why}: {where_to_put(m)}")
        try:
            got = download(url, dest, size=size, sha256=sha, label=f"{m.name} {what}", progress=progress)
        except DownloadError as e:
            if not e.reachable:
                raise VQForgeError(f"taming/{m.name}: {e} ({where_to_put(m)})") from None
            raise
    if not known:
        _record(key, url or str(dest), got.size, got.sha256)
    return dest


#: writes a model directory: (model, folder, model card) -> folder (:func:`vqforge.api.save_model`)
SaveModel = Callable[..., Path]


def pull(name: str, save: SaveModel, progress: bool = True, keep_download: bool = False, trust: bool = False) -> Path:
    """The model directory of the released model ``name``, downloaded and converted on first use; ``save`` writes
    it (:func:`vqforge.api.save_model`, passed in because the model directory's format belongs to ``api``, which
    asks this module for ``taming/`` names)."""
    if name.startswith("taming/"):
        name = name[len("taming/"):]
    m = entry(name)
    out = model_path(name)
    if is_converted(name):
        return out
    with _locked(download_path(name)):  # one download per model at a time (e.g. every rank of a torchrun job)
        if is_converted(name):  # another process finished it while this one waited
            return out
        config = _fetch(m, "config", m.config_url, CONFIG_FILE, None, m.config_sha256, progress)
        ckpt = _fetch(m, "checkpoint", m.checkpoint_url, CHECKPOINT_FILE, m.size, m.sha256, progress)
        convert(m, config, ckpt, out, save, trust=trust)
        if not keep_download:
            for f in (config, ckpt):
                f.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                download_path(name).rmdir()
    return out


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a ``.lock`` file beside it) while downloading into it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one process at a time is then the user's affair
        yield
        return
    with open(folder.parent / f".{folder.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def convert(m: TamingModel, config: Path, ckpt: Path, out: Path, save: SaveModel, trust: bool = False) -> Path:
    """The original's two files -> a vqforge model directory ``out`` (complete or absent)."""
    from ..compat.load import load_taming

    print(f"vqforge: converting taming/{m.name} into {out}", file=sys.stderr)
    model = load_taming(config, ckpt, trust=trust)
    card = {"summary": m.summary, "source": f"taming/{m.name}", "page": m.page,
            "converted_from": {"config": m.config_url or str(config), "checkpoint": m.checkpoint_url or str(ckpt)}}
    with atomic_dir(out, "model directory", replaceable=is_model_dir) as tmp:
        save(model, tmp, extra=card)
    return out
