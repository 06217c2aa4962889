"""The HTTP side of ``vqforge serve``: a FastAPI app with one page and a small JSON API.

=========================================== ================================================================
``GET /``                                   the page (static HTML/JS/CSS shipped in ``serve/static``)
``GET /api/models``                         the models, their tasks, classes / labels, and the limits
``POST /api/jobs/{task}``                   a job (multipart form: settings fields + the task's files) -> 202
``GET /api/jobs/{id}``                      its state, progress, result URLs
``GET /api/jobs/{id}/events``               the same as a server-sent event stream, until it finishes
``POST /api/jobs/{id}/cancel``              cancel it (waiting: at once; running: at the next token)
``GET /api/jobs/{id}/result/{k}.png``       a result (settings in its ``vqforge`` PNG text chunk)
``GET /api/jobs/{id}/preview/{k}.png``      the latest live preview while it runs
``GET /api/jobs/{id}/settings.json``        the settings and numbers of a finished job
``POST /api/labels``                        a label PNG checked against a model, returned as one channel of ids
=========================================== ================================================================

Every client error is ``{"error": "<one line>"}`` with a 4xx status (a request for a Host other than the
loopback names gets the middleware's plain 400 "Invalid host header"); the server keeps serving. Every POST needs
the same origin and this process's token (header ``X-VQForge-Token``; in the page, and in ``GET /api/models`` as
``token``), and every response carries the security headers: see :mod:`vqforge.serve.guard`.
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import __version__
from .engine import Engine
from .forms import TASKS, BadInput, Limits, parse_settings
from .guard import Guard, new_token, with_token
from .images import decode_labels, labels_png
from .jobs import Job, JobQueue
from .tasks import FILES, prepare

LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
NO_STORE = {"Cache-Control": "no-store"}


def create_app(engines: dict[str, Engine], limits: Limits = Limits(), allowed_hosts: list[str] | None = None,
               queue: JobQueue | None = None) -> FastAPI:
    """The web app over already loaded ``engines`` (name -> :class:`Engine`).

    ``allowed_hosts``: Host headers answered (default: loopback names only, which also shuts out DNS-rebinding
    pages); ``["*"]`` when bound to another interface on purpose.
    """
    queue = queue or JobQueue(limits.max_queue, limits.keep_jobs)
    # No Swagger page: it loads scripts from a CDN. The schema is at /api/openapi.json.
    app = FastAPI(title="vqforge", version=__version__, openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)
    token = new_token()  # state-changing requests carry it; the Guard runs after the Host check (added first)
    app.add_middleware(Guard, token=token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOOPBACK_HOSTS)
    app.state.queue, app.state.engines, app.state.limits, app.state.token = queue, engines, limits, token
    static = resources.files("vqforge.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    _errors(app)

    def engine_for(name: str) -> Engine:
        if name not in engines:
            known = ", ".join(engines) or "none loaded"
            raise BadInput(f"model: unknown model {name[:60]!r} (this server has: {known})")
        return engines[name]

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(with_token((static / "index.html").read_text(encoding="utf-8"), token), headers=NO_STORE)

    described = [e.describe(limits.max_side) for e in engines.values()]  # once: the offered sizes take checks

    @app.get("/api/models")
    def models() -> dict:
        return {"version": __version__, "models": described, "token": token,
                "limits": {"max_side": limits.max_side, "max_count": limits.max_count,
                           "max_upload_mb": limits.max_upload_mb, "max_upload_pixels": limits.max_upload_pixels}}

    @app.post("/api/jobs/{task}", status_code=202)
    async def submit(task: str, request: Request) -> JSONResponse:
        if task not in TASKS:
            raise BadInput(f"unknown task {task[:40]!r} (tasks: {', '.join(TASKS)})", status=404)
        text, uploads = await _read_form(request, limits)
        known = engines.get(text.get("model", "").strip())
        s = parse_settings(text, limits, files=FILES[task], defaults=known.defaults if known else None)
        engine = engine_for(s.model)
        work = await run_in_threadpool(prepare, task, engine, s, uploads, limits)  # decoding is CPU work
        job = queue.submit(Job(task, s.model, s.to_dict()), work)
        return JSONResponse(job.snapshot(queue.position(job)), status_code=202)

    @app.post("/api/labels")
    async def labels(request: Request) -> Response:
        text, uploads = await _read_form(request, limits)
        engine = engine_for(text.get("model", ""))
        if engine.n_labels < 1 or "labels" not in uploads:
            raise BadInput("give a segmentation model and a labels file" if "labels" not in uploads
                           else f"model {engine.name!r} takes no segmentation maps")
        ids = await run_in_threadpool(decode_labels, uploads["labels"], "labels", limits, engine.n_labels)
        return Response(labels_png(ids), media_type="image/png", headers=NO_STORE)

    _job_routes(app, queue)
    return app


def _job_routes(app: FastAPI, queue: JobQueue) -> None:
    """The routes that read a submitted job: status, cancel, live events, results, previews and settings."""

    @app.get("/api/jobs/{job_id}")
    def status(job_id: str) -> dict:
        job = queue.get(job_id)
        return job.snapshot(queue.position(job))

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict:
        job = queue.cancel(job_id)
        return job.snapshot(queue.position(job))

    @app.get("/api/jobs/{job_id}/events")
    async def events(job_id: str, request: Request) -> StreamingResponse:
        job = queue.get(job_id)
        return StreamingResponse(_event_stream(job, queue, request), media_type="text/event-stream",
                                 headers={**NO_STORE, "X-Accel-Buffering": "no"})

    @app.get("/api/jobs/{job_id}/result/{k}.png")
    def result(job_id: str, k: int) -> Response:
        return _png(queue.get(job_id), "results", k)

    @app.get("/api/jobs/{job_id}/preview/{k}.png")
    def preview(job_id: str, k: int) -> Response:
        return _png(queue.get(job_id), "previews", k)

    @app.get("/api/jobs/{job_id}/settings.json")
    def settings(job_id: str) -> JSONResponse:
        job = queue.get(job_id)
        if job.state != "done":
            raise BadInput(f"job {job.id} is {job.state}; settings come with its results", status=409)
        return JSONResponse({**job.record, "metrics": job.metrics, "seconds": job.seconds,
                             "vqforge_version": __version__},
                            headers={"Content-Disposition": f'attachment; filename="vqforge-{job.kind}-{job.id}.json"'})


async def _read_form(request: Request, limits: Limits) -> tuple[dict[str, str], dict[str, bytes]]:
    """The form's text fields and file contents; the body size is checked from its declared length first."""
    length = request.headers.get("content-length")
    if length is None:
        raise BadInput("send the request with a Content-Length", status=411)
    if not length.isdigit() or int(length) > limits.max_upload_bytes:
        raise BadInput(f"request body of {length[:20]} bytes is larger than the server accepts "
                       f"({limits.max_upload_mb:g} MB, --max-upload-mb)", status=413)
    if int(length) and not request.headers.get("content-type", "").startswith(("multipart/form-data",
                                                                                 "application/x-www-form-urlencoded")):
        raise BadInput("send the fields as a form (multipart/form-data or application/x-www-form-urlencoded)", 415)
    try:
        form = await request.form(max_files=4, max_fields=32, max_part_size=64 * 1024)
    except HTTPException as e:
        raise BadInput(f"malformed form: {e.detail}") from None
    text, uploads = {}, {}
    for key, value in form.multi_items():
        if key in text or key in uploads:
            raise BadInput(f"{key[:40]}: given twice")
        if isinstance(value, UploadFile):
            uploads[key] = await value.read()
        else:
            text[key] = value
    await form.close()
    return text, uploads


async def _event_stream(job: Job, queue: JobQueue, request: Request):
    """Server-sent events: the job's snapshot whenever it changes, until it finishes or the client leaves."""
    last, beat = None, time.monotonic()
    while True:
        snap = job.snapshot(queue.position(job))
        if snap != last:
            yield f"data: {json.dumps(snap)}\n\n"
            last, beat = snap, time.monotonic()
        elif time.monotonic() - beat > 15:
            yield ": keep-alive\n\n"
            beat = time.monotonic()
        if snap["state"] in ("done", "error", "cancelled") or await request.is_disconnected():
            return
        await asyncio.sleep(0.1)


def _png(job: Job, which: str, k: int) -> Response:
    with job.lock:
        items = getattr(job, which)
        data = items[k] if 0 <= k < len(items) else None
    if data is None:
        raise BadInput(f"job {job.id} has no {which[:-1]} {k} (state: {job.state})", status=404)
    return Response(data, media_type="image/png", headers=NO_STORE)


def _errors(app: FastAPI) -> None:
    """Every error as ``{"error": one line}``; never a traceback to the client."""

    @app.exception_handler(BadInput)
    async def bad_input(request: Request, e: BadInput) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)
