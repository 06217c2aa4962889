"""The run directory and the one checkpoint record every trainer writes.

A run directory::

    RUN_DIR/config.yaml                  the resolved run config (written at start)
    RUN_DIR/checkpoints/last.pt          the newest checkpoint (what --resume and vqforge.load read)
    RUN_DIR/checkpoints/best.pt          the checkpoint with the best (finite) validation so far (when a stage
                                         has a validation metric)
    RUN_DIR/checkpoints/last_good.pt     the newest checkpoint whose next training step had finite losses: where
                                         a diverged run resumes (``--resume RUN_DIR/checkpoints/last_good.pt``)
    RUN_DIR/checkpoints/step_NNNNNNN.pt  kept every ``train.keep_every`` steps
    RUN_DIR/metrics.jsonl, tb/, images/  logs and previews

Every checkpoint is written whole to a temporary file beside its target and renamed over it
(:mod:`vqforge.io`), so a process killed at any moment (even SIGKILL in the middle of a save) leaves the
previous complete checkpoint in place (each rename followed by an fsync of the folder, so the new name survives a
power cut too); the temporary file it leaves behind is removed when the run is
resumed. A write that fails (full disk, read-only folder) is one line naming the file, and removes what
it had written.
"""

from __future__ import annotations

import io as _io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import dump_yaml, to_dict
from ..io import FORMAT_VERSION, VQForgeError, fsync_dir, load_torch, write_bytes, write_text

LAST, BEST, GOOD = "last.pt", "best.pt", "last_good.pt"

#: Trainers that write checkpoints, and the model kind each one's checkpoint holds.
TRAINERS = {"vqgan": "vqgan", "transformer": "transformer", "condition": "vqgan"}


@dataclass
class Checkpoint:
    """One training checkpoint, the same record for every trainer.

    kind: the model kind (``vqgan`` / ``transformer``: what ``vqforge.load`` builds). trainer: which trainer
    wrote it (``vqgan``, ``transformer``, ``condition``: what ``--resume`` continues). model_config: the
    model's config (plain data). model / ema: state dicts (``ema`` is None without EMA). step: optimisation
    steps done. optimizers: name -> optimizer state dict. train_config: the whole run config (plain data,
    the same meaning for every trainer: what rebuilds the run). rng: every process's random generator
    states. data: the training data position. extra: what a stage adds (e.g. the VQGAN's
    ``discriminator``, the transformer's ``label_names``), stored as top-level entries.
    """

    kind: str
    trainer: str
    model_config: dict[str, Any]
    model: dict[str, torch.Tensor]
    step: int
    train_config: dict[str, Any]
    optimizers: dict[str, Any] = field(default_factory=dict)
    ema: dict[str, torch.Tensor] | None = None
    rng: list[Any] | None = None
    data: dict[str, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    _CORE = ("format_version", "kind", "trainer", "model_config", "model", "ema", "step", "optimizers",
             "train_config", "rng", "data")

    def to_dict(self) -> dict[str, Any]:
        """The plain dict that is saved (the layout ``vqforge.load`` reads)."""
        out = {k: getattr(self, k) for k in self._CORE}
        out["model_config"] = to_dict(self.model_config)
        out["train_config"] = to_dict(self.train_config)
        clash = set(self.extra) & set(out)
        assert not clash, f"extra checkpoint entries may not shadow {clash}"
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: Any, source: str | Path) -> "Checkpoint":
        """Read a saved checkpoint, including those written before this record existed.

        Older layouts: no ``trainer`` (inferred: a ``vqgan`` checkpoint with ``n_labels`` came from the
        segmentation trainer), and transformer checkpoints whose ``train_config`` held only the ``train``
        section (now the whole run config: ``{"model": ..., "train": ...}``).
        """
        if not isinstance(d, dict) or not {"kind", "model_config", "model", "step"} <= set(d):
            raise VQForgeError(f"{source}: not a vqforge training checkpoint (needs kind, model_config, model, step)")
        d = dict(d)
        trainer = d.pop("trainer", None) or ("condition" if d["kind"] == "vqgan" and "n_labels" in d else d["kind"])
        train_config = d.get("train_config") or {}
        if trainer == "transformer" and "train" not in train_config:  # NOTE: the pre-record layout
            train_config = {"model": d["model_config"], "train": train_config}
        core = {k: d.pop(k) for k in cls._CORE if k in d and k != "trainer"}
        core["train_config"] = train_config
        return cls(trainer=trainer, extra=d, **core)


class RunDir:
    """A training run's folder (see the module doc); every write is atomic and every failure one line."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.yaml"
        self.checkpoint_dir = self.path / "checkpoints"
        self.last = self.checkpoint_dir / LAST
        self.best = self.checkpoint_dir / BEST
        self.images = self.path / "images"
        self.resumed_from: Path | None = None  # the checkpoint a resumed run continues
    def has_checkpoint(self) -> bool:
        return self.last.is_file()

    def write_config(self, cfg: Any) -> Path:
        """Write the resolved config as ``config.yaml``."""
        return self._write(self.config_path, dump_yaml(cfg).encode("utf-8"), "config")

    def save(self, ckpt: Checkpoint, keep: bool = False, best: bool = False) -> Path:
        """Write ``last.pt`` (and ``step_NNNNNNN.pt`` when ``keep``, ``best.pt`` when ``best``)."""
        buf = _io.BytesIO()
        torch.save(ckpt.to_dict(), buf)
        data = buf.getvalue()
        self._write(self.last, data, "checkpoint", ckpt.step)
        if keep:
            self._copy(self.last, self.checkpoint_dir / f"step_{ckpt.step:07d}.pt", data, ckpt.step)
        if best:
            self._copy(self.last, self.best, data, ckpt.step)
        return self.last

    def keep_good(self, path: Path) -> None:
        """``last_good.pt`` := ``path`` (a second name, no second write): called once the step after that
        checkpoint ran with finite losses."""
        good = self.checkpoint_dir / GOOD
        if path.is_file() and path != good:
            self._copy(path, good, None, None)

    def load(self, path: Path | None = None) -> Checkpoint:
        """Read ``last.pt`` (or ``path``) as a :class:`Checkpoint` (weights-only, one-line errors)."""
        path = path or self.last
        if not path.is_file():
            raise VQForgeError(f"{self.path}: not a run directory with a checkpoint (no {path})")
        return Checkpoint.from_dict(load_torch(path), path)

    def remove_partial_writes(self) -> list[Path]:
        """Delete temporary files that a killed process left mid-write; returns what was removed."""
        removed = []
        for folder in (self.path, self.checkpoint_dir):
            if folder.is_dir():
                for f in folder.glob(".*.tmp"):
                    f.unlink(missing_ok=True)
                    removed.append(f)
        return removed

    def _write(self, path: Path, data: bytes, what: str, step: int | None = None) -> Path:
        try:
            return write_bytes(path, data)
        except OSError as e:
            raise VQForgeError(self._failure(path, what, e, step)) from None

    def _copy(self, src: Path, dst: Path, data: bytes | None, step: int | None) -> None:
        """``dst`` as a second name of ``src`` (a hard link: no second write), else a copy."""
        tmp = dst.with_name(f".{dst.name}.link.tmp")
        try:
            tmp.unlink(missing_ok=True)
            os.link(src, tmp)
            os.replace(tmp, dst)
            fsync_dir(dst.parent)
        except OSError:
            tmp.unlink(missing_ok=True)
            self._write(dst, src.read_bytes() if data is None else data, "checkpoint", step)

    def _failure(self, path: Path, what: str, e: OSError, step: int | None) -> str:
        why = e.strerror or type(e).__name__
        kept = ""
        if what == "checkpoint" and path.name == LAST:
            kept = "; the previous checkpoint is kept" if self.last.is_file() else "; no checkpoint was written"
        at = f" at step {step}" if step is not None else ""
        return f"{path}: cannot write the {what}{at} ({why}){kept}"


def resume_checkpoint(out: str | Path, resume: bool, trainer: str) -> tuple[RunDir, Checkpoint | None]:
    """The run directory and, when resuming, its checkpoint (the resume guard: one-line errors)."""
    run = RunDir(out)
    if not resume:
        if run.has_checkpoint():
            raise VQForgeError(f"{run.path}: already holds a run (checkpoints/last.pt); continue it with "
                               f"--resume {run.path} or choose another --out")
        return run, None
    path = Path(out)
    if path.is_file() and path.parent.name == "checkpoints":  # --resume RUN/checkpoints/last_good.pt (or step_N.pt)
        run = RunDir(path.parent.parent)
        ckpt = run.load(path)
        run.resumed_from = path
        if ckpt.trainer != trainer:
            raise VQForgeError(f"{path}: written by `vqforge train {ckpt.trainer}`, not `train {trainer}`")
        return run, ckpt
    if not run.has_checkpoint():
        raise VQForgeError(f"{run.path}: not a vqforge run directory (no checkpoints/last.pt)")
    ckpt = run.load()
    run.resumed_from = run.last
    if ckpt.trainer != trainer:
        raise VQForgeError(f"{run.last}: written by `vqforge train {ckpt.trainer}`, not `train {trainer}`")
    return run, ckpt


def write_debug_text(run: RunDir, name: str, text: str) -> None:
    """A small text file under ``RUN_DIR/debug/`` (tests use it to compare DDP ranks)."""
    write_text(run.path / "debug" / name, text)


def append_debug_line(run: RunDir, name: str, line: str) -> None:
    """One line appended to ``RUN_DIR/debug/NAME`` (``VQFORGE_DEBUG_SAMPLES``: which samples each batch held, for
    tests of sharded data), flushed at once like ``metrics.jsonl``."""
    path = run.path / "debug" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
