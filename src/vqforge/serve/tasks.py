"""From a checked request to the work a job runs: decode the uploads, check them against the model, and bind
the engine call that fills the job with PNG results (each carrying its settings)."""

from __future__ import annotations

from typing import Callable

from .engine import Engine, Output
from .forms import BadInput, JobSettings, Limits
from .images import decode_labels, decode_mask, decode_photo, png_bytes
from .jobs import Job

#: The file fields each task takes (complete: ``labels`` only for segmentation models, see :func:`needed`).
FILES = {"sample": (), "synthesize": ("labels",), "complete": ("image", "mask", "labels"), "reconstruct": ("image",)}


def needed(task: str, engine: Engine) -> tuple[str, ...]:
    """The files a job of ``task`` on ``engine`` needs: a segmentation model completes under a label map."""
    return tuple(f for f in FILES[task] if f != "labels" or engine.n_labels)


def prepare(task: str, engine: Engine, s: JobSettings, uploads: dict[str, bytes], limits: Limits
            ) -> Callable[[Job], None]:
    """Check everything a job of ``task`` needs now (:class:`BadInput` on any problem); return its work."""
    files = needed(task, engine)
    for name in files:
        if name not in uploads:
            raise BadInput(f"{name}: missing file (this task takes: {', '.join(files)})")
    for name in set(uploads) - set(files):
        raise BadInput(f"{name}: model {engine.name!r} takes no {name} file for {task}")
    if task == "sample":
        engine.check(task, s)
        return _work(lambda report: engine.sample(s, report))
    if task == "synthesize":
        ids = decode_labels(uploads["labels"], "labels", limits, engine.n_labels)
        engine.check(task, s, ids.shape)
        return _work(lambda report: engine.synthesize(s, ids, report))
    if task == "complete":
        image = decode_photo(uploads["image"], "image", limits, engine.factor, engine.channels)
        mask = decode_mask(uploads["mask"], "mask", limits, tuple(image.shape[1:]))
        ids = decode_labels(uploads["labels"], "labels", limits, engine.n_labels) if engine.n_labels else None
        if ids is not None and ids.shape != tuple(image.shape[1:]):
            raise BadInput(f"labels: {ids.shape[0]}x{ids.shape[1]} px, but the image is "
                           f"{image.shape[1]}x{image.shape[2]} px")
        engine.check(task, s, tuple(image.shape[1:]))
        return _work(lambda report: engine.complete(s, image, mask, report, ids))
    image = decode_photo(uploads["image"], "image", limits, engine.factor, engine.channels, crop=True)
    engine.check(task, s, tuple(image.shape[1:]))
    return _work(lambda report: engine.reconstruct(s, image))


def _work(run: Callable) -> Callable[[Job], None]:
    """The job body: run the engine with the job as its progress sink, then store PNGs with settings inside."""

    def work(job: Job) -> None:
        def report(done: int, total: int, preview) -> None:
            job.progress(done, total, None if preview is None else lambda: [png_bytes(x) for x in preview()])

        out: Output = run(report)
        record = {**out.settings, "job": job.id}
        pngs = [png_bytes(x, {**record, "index": k, "caption": c})
                for k, (x, c) in enumerate(zip(out.images, out.captions))]
        job.store(pngs, out.captions, record, out.metrics)

    return work
