"""Jobs: a bounded queue in front of one worker thread, so that requests wait instead of overloading the device.

Each job has an unguessable id (browser tabs and API clients see only their own), a state (queued, running,
done, error, cancelled), progress, live previews and results as PNG bytes. The worker runs one job at a
time; a job can be cancelled while it waits or between two tokens while it runs.
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..io import VQForgeError
from .forms import BadInput

log = logging.getLogger("vqforge.serve")
FINISHED = ("done", "error", "cancelled")


class Cancelled(Exception):
    """Raised inside a running job when its cancellation was asked for."""


@dataclass
class Job:
    """One request's work and everything a client may read about it (under ``lock``)."""

    kind: str
    model: str
    settings: dict
    id: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    state: str = "queued"
    message: str = ""
    done: int = 0
    total: int = 0
    previews: list[bytes] = field(default_factory=list)
    preview_version: int = 0
    results: list[bytes] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    seconds: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    cancel_requested: threading.Event = field(default_factory=threading.Event, repr=False)
    preview_every: float = 0.5
    _next_preview: float = 0.0

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def progress(self, done: int, total: int, preview: Callable[[], list[bytes]] | None = None) -> None:
        """Record progress; take a preview when one is due (a preview never costs more than ~1/4 of the time)."""
        if self.cancel_requested.is_set():
            raise Cancelled()
        with self.lock:
            self.done, self.total = done, total
        now = time.monotonic()
        if preview is not None and now >= self._next_preview and done < total:
            pngs = preview()
            cost = time.monotonic() - now
            self._next_preview = time.monotonic() + max(self.preview_every, 4 * cost)
            with self.lock:
                self.previews, self.preview_version = pngs, self.preview_version + 1

    def store(self, results: list[bytes], captions: list[str], record: dict, metrics: dict) -> None:
        """Keep a finished task's PNGs, their captions, its settings record and its numbers."""
        with self.lock:
            self.results, self.captions, self.record, self.metrics = results, captions, record, metrics

    def snapshot(self, position: int | None = None) -> dict:
        """The job as JSON-ready data (what status requests and the event stream send)."""
        with self.lock:
            base = f"/api/jobs/{self.id}"
            snap = {"id": self.id, "kind": self.kind, "model": self.model, "state": self.state,
                    "message": self.message, "done": self.done, "total": self.total, "settings": self.settings}
            if position is not None:
                snap["queue_position"] = position
            if self.previews and not self.finished:
                v = self.preview_version
                snap["previews"] = [f"{base}/preview/{k}.png?v={v}" for k in range(len(self.previews))]
            if self.state == "done":
                snap["results"] = [{"url": f"{base}/result/{k}.png", "caption": c} for k, c in enumerate(self.captions)]
                snap["settings_url"] = f"{base}/settings.json"
                snap["metrics"], snap["seconds"] = self.metrics, self.seconds
            return snap


class JobQueue:
    """At most ``max_queue`` jobs waiting or running; one worker thread; the last ``keep`` finished jobs kept."""

    def __init__(self, max_queue: int, keep: int):
        self.max_queue, self.keep = max_queue, keep
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._waiting: collections.deque[tuple[Job, Callable[[Job], None]]] = collections.deque()
        self._cv = threading.Condition()
        self._running: Job | None = None
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name="vqforge-serve-worker", daemon=True)
        self._worker.start()

    def submit(self, job: Job, work: Callable[[Job], None]) -> Job:
        """Queue ``work(job)``; :class:`BadInput` (503) when the queue is full."""
        with self._cv:
            busy = len(self._waiting) + (self._running is not None)
            if busy >= self.max_queue:
                raise BadInput(f"the server is busy: {busy} jobs waiting or running (--max-queue {self.max_queue}); "
                               f"try again shortly", status=503)
            self._jobs[job.id] = job
            self._waiting.append((job, work))
            self._forget_old()
            self._cv.notify()
        return job

    def get(self, job_id: str) -> Job:
        with self._cv:
            job = self._jobs.get(job_id)
        if job is None:
            raise BadInput(f"no job {job_id[:40]!r} (unknown, or finished long ago)", status=404)
        return job

    def position(self, job: Job) -> int | None:
        """How many jobs run or wait before ``job`` (0: it runs now), None once it has finished."""
        with self._cv:
            if job is self._running:
                return 0
            for k, (waiting, _) in enumerate(self._waiting):
                if waiting is job:
                    return k + (self._running is not None)
        return None

    def cancel(self, job_id: str) -> Job:
        """Cancel a waiting job at once, a running one at its next token; finished jobs stay as they are."""
        job = self.get(job_id)
        job.cancel_requested.set()
        with self._cv:
            for item in list(self._waiting):
                if item[0] is job:
                    self._waiting.remove(item)
                    self._finish(job, "cancelled", "cancelled while waiting")
        return job

    def close(self) -> None:
        with self._cv:
            self._closed = True
            for job, _ in self._waiting:
                self._finish(job, "cancelled", "the server is shutting down")
            self._waiting.clear()
            self._cv.notify_all()

    # ----------------------------------------------------------------------------------------------- worker
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                job, work = self._waiting.popleft()
                self._running = job
                job.state = "running"
            self._run(job, work)
            with self._cv:
                self._running = None
                self._forget_old()

    def _run(self, job: Job, work: Callable[[Job], None]) -> None:
        t0 = time.monotonic()
        try:
            work(job)
            state, message = "done", ""
        except Cancelled:
            state, message = "cancelled", "cancelled"
        except (VQForgeError, ValueError) as e:  # the library's one-line errors are the client's to read
            state, message = "error", str(e).splitlines()[0] if str(e) else type(e).__name__
        except Exception as e:  # noqa: BLE001 - the server keeps serving; the log has the traceback
            log.exception("job %s (%s) failed", job.id, job.kind)
            state, message = "error", f"internal error ({type(e).__name__}); see the server log"
        job.seconds = round(time.monotonic() - t0, 3)
        self._finish(job, state, message)

    @staticmethod
    def _finish(job: Job, state: str, message: str) -> None:
        with job.lock:  # the last previews stay readable: a client may still be fetching them
            job.state, job.message = state, message

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs beyond ``keep`` (called with the condition held)."""
        finished = [j for j in self._jobs.values() if j.finished]
        for job in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[job.id]
