"""The one place that writes files and loads checkpoints.

* Every write is atomic: data goes to a temporary file in the target's folder, is flushed and
  fsync'ed, then renamed over the target. A crash never leaves a half-written file.
* Every load is safe: ``torch.load(..., weights_only=True)`` and safetensors; pickled code is never run.
* Every failure is one line that names the file and the problem (:class:`VQForgeError`).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

FORMAT_VERSION = 1


class VQForgeError(Exception):
    """A user-facing error: one line that names the file and the problem."""


# --------------------------------------------------------------------------------------------- writing
def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    """Atomically write ``data`` as indented JSON."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_torch(path: str | Path, obj: Any) -> Path:
    """Atomically ``torch.save`` an object made of tensors, dicts, lists and scalars."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_bytes(path, buf.getvalue())


def save_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Atomically write tensors in the safetensors format."""
    from safetensors.torch import save

    data = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return write_bytes(path, save(data, metadata=metadata))


def save_image(path: str | Path, image) -> Path:
    """Atomically write a PIL image; the format follows the suffix (PNG by default)."""
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------------------- loading
def load_torch(path: str | Path, what: str = "checkpoint") -> Any:
    """Load a ``torch.save`` file without executing pickled code.

    Raises :class:`VQForgeError` with a one-line message for a missing, truncated or corrupt file, or
    for a file that would need arbitrary code to load.
    """
    path = Path(path)
    if not path.is_file():
        raise VQForgeError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - translated into one readable line
        msg = str(e)
        if "Weights only load failed" in msg or "Unsupported global" in msg or "unsupported global" in msg.lower():
            first = next((ln.strip() for ln in msg.splitlines() if "GLOBAL" in ln or "global" in ln), "")
            raise VQForgeError(
                f"{path}: this {what} contains pickled Python objects beyond tensors and plain data "
                f"({first or 'unsupported object'}); vqforge never runs pickled code. Re-save it with only "
                f"tensors (e.g. torch.save({{'state_dict': sd}}, ...)) from a trusted environment"
            ) from None
        first_line = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
        raise VQForgeError(f"{path}: cannot read {what}: truncated or corrupt file ({first_line})") from None


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file with a one-line error for a missing or corrupt file."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise VQForgeError(f"{path}: weights file not found")
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # noqa: BLE001
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VQForgeError(f"{path}: cannot read weights: truncated or corrupt file ({first})") from None


def load_state_dict_strict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load weights with strict key and shape checks; mismatches raise one readable line."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    problems = []
    if missing:
        problems.append(f"missing keys: {_short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_short_list(unexpected)}")
    shapes = [
        f"{k} (file {tuple(state_dict[k].shape)} vs config {tuple(own[k].shape)})"
        for k in own
        if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)
    ]
    if shapes:
        problems.append(f"shape mismatch for {_short_list(shapes)}; the config does not match these weights")
    if problems:
        raise VQForgeError(f"{source}: " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=True)


def _short_list(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
