"""The one place that writes files and loads checkpoints.

* Every write is atomic: data goes to a temporary file in the target's folder, is flushed and
  fsync'ed, then renamed over the target. A crash never leaves a half-written file.
* A folder of outputs (token dataset, samples) is written into a temporary sibling folder and renamed
  into place when complete (:func:`atomic_dir`): an interrupted command leaves it complete or absent.
* A write that fails (full disk, read-only folder, no permission) is an :class:`OutputError`: one line
  naming the output, with nothing half-written left behind.
* Every load is safe: ``torch.load(..., weights_only=True)`` and safetensors; pickled code is never run
  unless the user says the file is trusted (``--trust-checkpoint``, ``trust=True``).
* Every YAML file is read by :func:`read_yaml` (plain data only), every YAML value by :func:`parse_yaml`;
  small JSON records (indexes, checksums) by :func:`read_json`.
* Every failure is one line that names the file and the problem (:class:`VQForgeError`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

FORMAT_VERSION = 1


class VQForgeError(Exception):
    """A user-facing error: one line that names the file and the problem."""


class OutputError(VQForgeError, OSError):
    """An output could not be written (full disk, read-only, ...): an OSError with the system's errno/strerror."""

    def __str__(self) -> str:  # the one line (an OSError with errno and strerror set would print only those)
        return str(self.args[0]) if self.args else ""


def _output_error(path: Path, e: OSError, what: str = "") -> OutputError:
    """One line for a failed write: the output, the operating system's reason, and that nothing is left.

    Call it before removing partial files: a short write without an error number (numpy's ``tofile``
    says only "N requested and M written") is reported as a full disk when the disk is full.
    """
    reason, code = e.strerror, e.errno
    if not reason:
        reason = str(e) or type(e).__name__
        if _disk_full(path):
            reason, code = f"{os.strerror(errno.ENOSPC)} ({reason})", errno.ENOSPC
    err = OutputError(f"{path}: cannot write{' the ' + what if what else ''}: {reason} (nothing was written)")
    err.errno, err.strerror = code, reason  # callers that name the system's reason read it from here
    return err


def _disk_full(path: Path) -> bool:
    """Whether the file system that holds ``path`` (or its nearest existing parent) has no room left."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        usage = shutil.disk_usage(p)
    except OSError:
        return False
    return usage.free < 64 * 1024


# --------------------------------------------------------------------------------------------- writing
def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then rename it into place.

    A failing write (e.g. no space left) removes the temporary file and raises :class:`OutputError`.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)  # the rename itself survives a power cut
    except BaseException as e:
        err = _output_error(path, e) if isinstance(e, OSError) and not isinstance(e, OutputError) else None
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if err is not None:
            raise err from None
        raise
    return path


@contextlib.contextmanager
def atomic_dir(path: str | Path, what: str = "output folder",
               replaceable: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Write a folder completely or not at all.

    Yields a temporary sibling folder (``.NAME.tmp-PID-XXXX``) to write into; when the block ends
    without error it is renamed to ``path``; on any error or interrupt it is deleted, so ``path`` is left
    as it was. An existing ``path`` is replaced only when it is empty or ``replaceable(path)`` says it is
    an output of the same kind (anything else is refused before writing). Write failures raise
    :class:`OutputError`. Temporary folders of processes that died (e.g. SIGKILL) are removed on the next
    call for the same ``path``.
    """
    path = check_output_dir(path, what, replaceable)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_siblings(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; the output gets the usual permissions
    except OSError as e:
        raise _output_error(path, e, what) from None
    try:
        yield tmp
        fsync_dir(tmp)
        if path.exists():  # swap: the old folder goes aside, the new one in, then the old one is deleted
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-{os.getpid()}-", dir=path.parent))
            os.replace(path, old / path.name)
            try:
                os.replace(tmp, path)
            except BaseException:  # interrupted between the two renames: the old folder goes back
                os.replace(old / path.name, path)
                shutil.rmtree(old, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as e:
        err = _output_error(path, e, what) if isinstance(e, OSError) and not isinstance(e, OutputError) else None
        shutil.rmtree(tmp, ignore_errors=True)
        if err is not None:
            raise err from None
        if isinstance(e, OutputError):  # name the output, not the temporary folder
            err = OutputError(str(e).replace(str(tmp), str(path)))
            err.errno = e.errno
            raise err from None
        raise


def check_output_dir(path: str | Path, what: str = "output folder",
                     replaceable: Callable[[Path], bool] | None = None) -> Path:
    """Refuse, before any work, an output folder that :func:`atomic_dir` would not replace (see there)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VQForgeError(f"{path}: exists and is not a folder; choose another output")
    if path.is_dir() and any(path.iterdir()) and not (replaceable and replaceable(path)):
        raise VQForgeError(f"{path}: exists and is not a {what} (vqforge replaces only its own outputs); "
                           f"choose another output folder or empty it")
    return path


def _remove_stale_siblings(path: Path) -> None:
    """Delete ``.NAME.tmp-PID-*`` / ``.NAME.old-PID-*`` folders whose process no longer runs."""
    for kind in ("tmp", "old"):
        for p in path.parent.glob(f".{path.name}.{kind}-*-*"):
            pid = p.name[len(f".{path.name}.{kind}-"):].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(path: Path) -> None:
    """Make a folder's entries durable (best effort: not every platform can open folders)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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


# --------------------------------------------------------------------------------------------- loading
#: The command-line option that allows full unpickling (named in the refusal message).
TRUST_OPTION = "--trust-checkpoint"


_NOT_TORCH = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image", b"BM": "a BMP image",
              b"RIFF": "a WEBP image (or other RIFF file)", b"%PDF": "a PDF document"}  # first bytes -> what it is


def load_torch(path: str | Path, what: str = "checkpoint", trust: bool = False, offer_trust: bool = False) -> Any:
    """Load a ``torch.save`` file, by default without executing pickled code.

    ``trust=True`` (the ``--trust-checkpoint`` option) allows a file that holds pickled Python objects
    beyond tensors and plain data to be fully unpickled, which runs whatever code the file names: only
    for files from a trusted source. Raises :class:`VQForgeError` with a one-line message for a missing,
    truncated or corrupt file, one that is no PyTorch file (an image: named as such), and (without ``trust``) one
    that needs code to load, recommending ``--trust-checkpoint`` only with ``offer_trust`` (the command has it).
    """
    path = Path(path)
    if not path.is_file():
        raise VQForgeError(f"{path}: {what} not found")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise VQForgeError(f"{path}: cannot read {what} ({e.strerror or type(e).__name__})") from None
    kind = next((name for magic, name in _NOT_TORCH.items() if head.startswith(magic)), None)
    if kind is None and head and not head.startswith((b"PK", b"\x80")):  # a zip archive or a pickle (protocol 2+)
        kind = "not a PyTorch file (neither a zip archive nor a pickle)"
    if kind is not None:
        raise VQForgeError(f"{path}: {kind}, not a {what} (a PyTorch file written by torch.save)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - translated into one readable line
        msg = str(e)
        if "Weights only load failed" in msg or "Unsupported global" in msg or "unsupported global" in msg.lower():
            first = next((ln.strip() for ln in msg.splitlines() if "GLOBAL" in ln or "global" in ln), "")
            if trust:
                return _load_trusted(path, what)
            allow = (f"if the file comes from a source you trust, pass {TRUST_OPTION} (trust=True in Python), or "
                     if offer_trust else "")
            raise VQForgeError(
                f"{path}: this {what} contains pickled Python objects beyond tensors and plain data "
                f"({first or 'unsupported object'}); vqforge never runs pickled code unless told to: {allow}"
                f"re-save it with only tensors (torch.save({{'state_dict': sd}}, ...))"
            ) from None
        first_line = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
        raise VQForgeError(f"{path}: cannot read {what}: truncated or corrupt file ({first_line})") from None


def _load_trusted(path: Path, what: str) -> Any:
    """Full unpickling, for a file the user vouched for (``--trust-checkpoint``); says so on stderr."""
    import sys

    print(f"vqforge: {path}: fully unpickling this {what} ({TRUST_OPTION}): any code it names runs",
          file=sys.stderr)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        raise VQForgeError(f"{path}: cannot unpickle this {what}: it needs the Python module {e.name!r}, which "
                           f"is not installed") from None
    except Exception as e:  # noqa: BLE001 - one readable line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VQForgeError(f"{path}: cannot unpickle this {what} ({first})") from None


def read_json(path: str | Path, what: str, fix: str = "") -> Any:
    """The JSON in the file ``path``; an unreadable or invalid one is one :class:`VQForgeError`,
    ``PATH: unreadable WHAT (why)FIX`` (``fix``: what to do about it)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise VQForgeError(f"{path}: unreadable {what} ({e}){fix}") from None


def read_yaml(path: str | Path, error: Callable[[str], Exception] = VQForgeError) -> Any:
    """The plain data of the YAML file ``path`` (``yaml.safe_load``: never a Python object), None when it is empty.

    A missing, unreadable or invalid file raises ``error("PATH: why")``, one line (``error``: the exception class
    the caller's users expect, e.g. ``ConfigError`` for configs).
    """
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None


def parse_yaml(text: str) -> Any:
    """One YAML value written on a command line or in a setting (``3``, ``[1, 2]``, ``null``, ``true``): its plain
    data; :class:`ValueError` when it is not valid YAML."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(str(e).splitlines()[0]) from None


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks); remembered per (path, size, mtime)."""
    path = Path(path)
    st = path.stat()
    return _sha256_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    check_finite(state_dict, source)
    module.load_state_dict(state_dict, strict=True)


def check_finite(state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """Refuse weights holding NaN or infinity (a diverged run's): one line naming the file and the first such
    tensor. Every model vqforge loads passes here, so no command samples or scores it."""
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise VQForgeError(f"{source}: {len(bad)} weight tensor(s) hold NaN or infinity (first: {bad[0]}): the "
                           f"training run that wrote it diverged; use an earlier checkpoint (a run keeps "
                           f"checkpoints/last_good.pt)")


def _short_list(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
