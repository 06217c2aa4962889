"""One file over HTTP(S): resumable, verified, and never half-written where a finished file is expected.

:func:`download` writes ``DEST.part`` and renames it to ``DEST`` only once the whole file is there and checks
out (its size against the server's and the expected one, its SHA-256 against the expected one). A download
cut short (the connection dropped, Ctrl-C) keeps ``DEST.part``; the next call asks the server for the rest
(an HTTP range request) and carries on from there. A file that is wrong (a 404, a web page served in place of a
checkpoint, a different size or checksum) is deleted and reported in one line.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..io import VQForgeError

CHUNK = 1 << 20
TIMEOUT_S = 60
USER_AGENT = "vqforge (https://github.com/; model download)"


class DownloadError(VQForgeError):
    """A download failed; ``reachable`` is False when the server could not be reached at all."""

    def __init__(self, message: str, reachable: bool = True):
        super().__init__(message)
        self.reachable = reachable


@dataclass(frozen=True)
class Downloaded:
    """A finished download: where it is, its size in bytes and its SHA-256."""

    path: Path
    size: int
    sha256: str


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _looks_like_html(head: bytes) -> bool:
    h = head.lstrip()[:64].lower()
    return h.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _progress(total: int | None, initial: int, label: str, enabled: bool):
    """A progress bar on stderr with size and rate (tqdm), or a no-op."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                file=sys.stderr, dynamic_ncols=True, leave=True)


def download(url: str, dest: str | Path, *, size: int | None = None, sha256: str | None = None,
             label: str = "", progress: bool = True) -> Downloaded:
    """Download ``url`` to ``dest`` (resuming ``dest.part`` if present) and verify it.

    ``size`` / ``sha256``: what the file must be (None: unknown, not checked). Raises :class:`DownloadError`
    with one line naming the URL and the problem; ``dest`` is only ever absent or complete and verified.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    label = label or dest.name
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:  # a leftover from another file: start again
        part.unlink()
        offset = 0
    response = _request(url, part, offset, label)
    if response is None:  # nothing left to send: the part may be complete already
        return _finish(url, part, dest, size, sha256, total=None)
    with response:
        offset, total = _range(response, url, part, offset, size, label)
        bar = _progress(total or size, offset, label, progress)
        try:
            _receive(response, part, offset, total, url, label, bar)
        except KeyboardInterrupt:
            raise VQForgeError(f"{url}: download of {label} interrupted; run the same command again to resume "
                               f"(kept {part.name})") from None
        finally:
            if bar is not None:
                bar.close()
    return _finish(url, part, dest, size, sha256, total)


def _request(url: str, part: Path, offset: int, label: str):
    """The server's response to a request for ``url`` from byte ``offset`` on; None when it has nothing left to
    send (HTTP 416 to a resume). A refusal or an unreachable server is a :class:`DownloadError`."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            return None
        _discard(part)
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; {label} was not downloaded (nothing was kept)") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"{url}: cannot reach the server ({reason})", reachable=False) from None


def _range(response, url: str, part: Path, offset: int, size: int | None, label: str) -> tuple[int, int | None]:
    """(where the response's bytes start, the file's whole size or None) from its headers: a web page, a resume
    answered with the wrong range, or a size other than ``size`` is a :class:`DownloadError` (``part`` deleted)."""
    ctype = response.headers.get("Content-Type", "")
    if "text/html" in ctype.lower():
        _discard(part)
        raise DownloadError(f"{url}: the server sent a web page (Content-Type {ctype.split(';')[0]}) instead of "
                            f"{label}; the link may have moved or need a browser (nothing was kept)")
    if response.status == 206:
        m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != offset:
            _discard(part)
            raise DownloadError(f"{url}: the server answered the resume request with the wrong range "
                                f"({response.headers.get('Content-Range')!r}); run again to start over "
                                f"(nothing was kept)")
        total = int(m.group(2)) if m.group(2) != "*" else None
    else:
        offset = 0  # the server ignored the range request: start from the beginning
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    if size is not None and total is not None and total != size:
        _discard(part)
        raise DownloadError(f"{url}: the server offers {total} bytes but {label} is {size} bytes; the file "
                            f"there changed or the link is wrong (nothing was kept)")
    return offset, total


def _receive(response, part: Path, offset: int, total: int | None, url: str, label: str, bar) -> None:
    """Append the response's bytes to ``part`` (from ``offset``; 0: a new file), synced to disk; an interrupted
    connection keeps what arrived (a :class:`DownloadError` saying so), a web page deletes it."""
    with open(part, "ab" if offset else "wb") as f:
        first = offset == 0
        while True:
            try:
                chunk = response.read(CHUNK)
            except (http.client.IncompleteRead, ConnectionError, socket.timeout, OSError) as e:
                f.flush()
                os.fsync(f.fileno())
                have = f.tell()
                raise DownloadError(
                    f"{url}: download of {label} interrupted at {_mib(have)}"
                    f"{' of ' + _mib(total) if total else ''} ({type(e).__name__}); run the same command "
                    f"again to resume from there") from None
            if not chunk:
                break
            if first and _looks_like_html(chunk):
                f.close()
                _discard(part)
                raise DownloadError(f"{url}: the server sent a web page instead of {label}; the link may "
                                    f"have moved or need a browser (nothing was kept)")
            first = False
            f.write(chunk)
            if bar is not None:
                bar.update(len(chunk))
        f.flush()
        os.fsync(f.fileno())


def _finish(url: str, part: Path, dest: Path, size: int | None, sha256: str | None, total: int | None) -> Downloaded:
    """Verify the finished ``part`` and rename it to ``dest``; anything wrong deletes it."""
    have = part.stat().st_size if part.is_file() else 0
    for expected, what in ((total, "the server announced"), (size, "expected")):
        if expected is not None and have != expected:
            if have < expected and what == "the server announced":
                raise DownloadError(f"{url}: the connection closed at {_mib(have)} of {_mib(expected)}; run the same "
                                    f"command again to resume from there")
            _discard(part)
            raise DownloadError(f"{url}: got {have} bytes, {what} {expected}; the file there changed or the link is "
                                f"wrong (nothing was kept)")
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256.lower():
        _discard(part)
        raise DownloadError(f"{url}: checksum changed: SHA-256 {digest[:16]}..., expected {sha256[:16]}... (recorded "
                            f"when it was first downloaded); the file there is not the one vqforge knows (nothing "
                            f"was kept)")
    os.replace(part, dest)
    return Downloaded(dest, have, digest)


def verify_file(path: Path, size: int | None, sha256: str | None) -> Downloaded:
    """Check a file a person put in place by hand against what is known of it (one-line error otherwise)."""
    have = path.stat().st_size
    if size is not None and have != size:
        raise VQForgeError(f"{path}: {have} bytes, expected {size}; put the complete file there")
    digest = sha256_of(path)
    if sha256 is not None and digest != sha256.lower():
        raise VQForgeError(f"{path}: SHA-256 {digest[:16]}..., expected {sha256[:16]}...; not the released file")
    if _looks_like_html(path.open("rb").read(64)):
        raise VQForgeError(f"{path}: a web page, not a model file; download the file itself")
    return Downloaded(path, have, digest)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
