"""Where vqforge keeps what it downloads: ``$VQFORGE_HOME``, else the platform's cache folder.

Layout under the home folder::

    models/taming/NAME/        converted model directories (model.yaml + model.safetensors), complete or absent
    downloads/taming/NAME/     the original's files while they download (``*.part``: resumable) or wait to convert
    checksums.json             size and SHA-256 of every file downloaded, recorded on first download
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_HOME = "VQFORGE_HOME"
#: set to 1 to never reach the network (``HF_HUB_OFFLINE=1`` counts too)
ENV_OFFLINE = "VQFORGE_OFFLINE"


def platform_cache() -> Path:
    """The platform's per-user cache folder (XDG on Linux, ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def vqforge_home() -> Path:
    """``$VQFORGE_HOME`` if set, else ``<platform cache>/vqforge``."""
    env = os.environ.get(ENV_HOME)
    return Path(env).expanduser() if env else platform_cache() / "vqforge"


def models_dir(source: str) -> Path:
    """Converted models from ``source`` (``taming``)."""
    return vqforge_home() / "models" / source


def downloads_dir(source: str) -> Path:
    """Files from ``source`` being downloaded or waiting to be converted."""
    return vqforge_home() / "downloads" / source


def checksums_file() -> Path:
    return vqforge_home() / "checksums.json"


def offline() -> bool:
    """Whether the user asked vqforge not to use the network (``VQFORGE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``)."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in (ENV_OFFLINE, "HF_HUB_OFFLINE"))
