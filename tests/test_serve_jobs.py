"""The web app's job queue: bounded, first come first served, cancellable, and a failing job never stops it."""

from __future__ import annotations

import threading
import time

import pytest

from vqforge.io import VQForgeError
from vqforge.serve.forms import BadInput
from vqforge.serve.jobs import Job, JobQueue


def wait(job: Job, timeout: float = 10.0) -> Job:
    deadline = time.monotonic() + timeout
    while not job.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.finished, job.state
    return job


def blocker():
    """A job body that runs until released (and reports progress, so it can be cancelled)."""
    started, release = threading.Event(), threading.Event()

    def work(job: Job) -> None:
        started.set()
        while not release.wait(0.01):
            job.progress(1, 10)
        job.store([b"png"], ["done"], {}, {})

    return work, started, release


def test_bounded_fifo_queue_and_positions():
    q = JobQueue(max_queue=3, keep=10)
    order = []
    work, started, release = blocker()
    first = q.submit(Job("sample", "m", {}), work)
    assert started.wait(5)
    queued = [q.submit(Job("sample", "m", {}), lambda job, k=k: order.append(k)) for k in range(2)]
    assert [q.position(first)] + [q.position(j) for j in queued] == [0, 1, 2]
    with pytest.raises(BadInput, match="busy") as e:
        q.submit(Job("sample", "m", {}), lambda job: None)
    assert e.value.status == 503
    release.set()
    for j in queued:
        wait(j)
    assert order == [0, 1] and first.state == "done" and q.position(first) is None
    assert q.submit(Job("sample", "m", {}), lambda job: None)  # room again
    q.close()


def test_cancel_waiting_and_running_jobs():
    q = JobQueue(max_queue=4, keep=10)
    work, started, release = blocker()
    running = q.submit(Job("sample", "m", {}), work)
    assert started.wait(5)
    ran = []
    waiting = q.submit(Job("sample", "m", {}), lambda job: ran.append(job.id))
    q.cancel(waiting.id)
    assert waiting.state == "cancelled" and "waiting" in waiting.message
    q.cancel(running.id)
    assert wait(running).state == "cancelled" and running.results == []
    time.sleep(0.1)
    assert ran == []  # the cancelled waiting job never ran
    release.set()
    q.close()


def test_errors_become_messages_and_the_worker_survives():
    q = JobQueue(max_queue=4, keep=10)

    def user_error(job):
        raise VQForgeError("size 3x3: not a multiple of 16\n(more detail)")

    def bug(job):
        raise KeyError("internal")

    a = wait(q.submit(Job("sample", "m", {}), user_error))
    b = wait(q.submit(Job("sample", "m", {}), bug))
    c = wait(q.submit(Job("sample", "m", {}), lambda job: job.store([b"x"], ["ok"], {}, {})))
    assert (a.state, a.message) == ("error", "size 3x3: not a multiple of 16")
    assert b.state == "error" and "internal error (KeyError)" in b.message and "Traceback" not in b.message
    assert c.state == "done" and c.snapshot()["results"][0]["caption"] == "ok"
    q.close()


def test_old_finished_jobs_are_forgotten_and_ids_unguessable():
    q = JobQueue(max_queue=4, keep=2)
    jobs = [wait(q.submit(Job("sample", "m", {}), lambda job: None)) for _ in range(4)]
    q.submit(Job("sample", "m", {}), lambda job: None)
    with pytest.raises(BadInput) as e:
        q.get(jobs[0].id)
    assert e.value.status == 404
    assert q.get(jobs[-1].id) is jobs[-1]
    assert len({j.id for j in jobs}) == 4 and all(len(j.id) >= 16 for j in jobs)
    q.close()


def test_previews_are_throttled(monkeypatch):
    """At most one preview per ``preview_every`` seconds, on a clock the test sets (a loaded machine that takes
    0.2 s for the loop below no longer decides the outcome)."""
    from vqforge.serve import jobs

    now = [100.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: now[0])
    job = Job("sample", "m", {}, preview_every=0.2)
    calls = []
    for k in range(1, 50):
        now[0] += 0.001  # 49 steps within 0.05 s
        job.progress(k, 100, lambda: calls.append(k) or [b"p"])
    assert calls == [1] and job.preview_version == 1  # one at the start, none within the next 0.2 s
    now[0] += 0.1  # 0.15 s after the first: still too soon
    job.progress(50, 100, lambda: calls.append(50) or [b"p"])
    now[0] += 0.06  # 0.21 s after the first
    job.progress(51, 100, lambda: calls.append(51) or [b"p"])
    assert calls == [1, 51] and job.preview_version == 2


def test_a_job_without_sampling_fields_samples_with_the_cards_settings(tmp_path, monkeypatch):
    """What the sampler is given, not what the job record says: a sample job that leaves top_k / cfg out reaches
    draw_batches with the model card's top_k 20 and guidance 1.5 (the page's defaults); given values win."""
    import sys
    from pathlib import Path

    import torch

    from vqforge.sampling import job
    from vqforge.serve import engine as eng
    from vqforge.serve.forms import Limits, parse_settings

    sys.path.insert(0, str(Path(__file__).parent))
    from serve_support import build_models

    path = build_models(tmp_path)["tinyclass"]
    engine = eng.load_engines([str(path)], torch.device("cpu"))[path.name]
    used = []
    real = job.draw_batches  # the sampling job's batches: what reaches the sampler

    def spy(net, lay, inputs, num, batch_size, settings, *args, **kwargs):
        used.append(settings)
        return real(net, lay, inputs, num, batch_size, settings, *args, **kwargs)

    monkeypatch.setattr(job, "draw_batches", spy)
    for form, want in (({"height": "16", "width": "16"}, (20, 1.5)),
                       ({"height": "16", "width": "16", "top_k": "5", "cfg": "0"}, (5, 0.0))):
        s = parse_settings({"model": path.name, "count": "1", **form}, Limits(), defaults=engine.defaults)
        engine.sample(s, lambda *a, **k: None)
        assert (used[-1].top_k, used[-1].cfg_scale) == want, used[-1]
