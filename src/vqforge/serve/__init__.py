"""``vqforge serve``: a local web app to sample, paint segmentation maps, complete and reconstruct images.

Modules, in the direction they import: :mod:`.forms` (limits, typed settings, form parsing),
:mod:`.images` (checked upload decoding, PNGs with settings), :mod:`.engine` (the one adapter to the
library), :mod:`.jobs` (bounded queue, one worker), :mod:`.tasks` (requests -> jobs), :mod:`.app` (HTTP).
FastAPI and uvicorn are optional dependencies (``pip install 'vqforge[serve]'``).
"""

from __future__ import annotations

from .forms import Limits

__all__ = ["Limits", "run"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def run(models: list[str], host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
        limits: Limits = Limits(), log=print, budget=None) -> None:
    """Load ``models`` once (bundled names or paths) and serve the app until interrupted. ``budget``
    (:class:`vqforge.memory.Budget`): the memory one job may take (default: a share of what is available)."""
    import uvicorn

    from ..devices import resolve_device
    from .app import LOOPBACK_HOSTS, create_app
    from .engine import load_engines

    engines = load_engines(models, resolve_device(device))
    for engine in engines.values():
        engine.budget = budget
    hosts = LOOPBACK_HOSTS if host in LOOPBACK else ["*"]
    app = create_app(engines, limits, allowed_hosts=hosts)
    if host not in LOOPBACK:
        log(f"vqforge serve: listening on {host}, reachable from other machines; there is no authentication")
    shown = f"[{host}]" if ":" in host else host
    log(f"vqforge serve: {', '.join(engines)} on http://{shown}:{port}/  (Ctrl-C stops)")
    try:
        # Open event streams end with their jobs; on Ctrl-C they get 3 s, not forever.
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    finally:
        app.state.queue.close()
