"""Models from where users keep them: the original's released models by name (``taming/NAME``), the Hugging
Face Hub (``hf://ORG/NAME[@REVISION]``) and vqforge's own cache folder (``$VQFORGE_HOME``).

* :mod:`.home`: where the cache lives (``$VQFORGE_HOME``, else the platform's cache folder).
* :mod:`.catalogue`: the original's released models, one entry each (name, what it is, the links its README
  gives, size and SHA-256 where known).
* :mod:`.download`: one resumable, verified HTTP download (range requests, progress with size and rate).
* :mod:`.taming`: ``taming/NAME`` -> a vqforge model directory in the cache (download once, convert once).
* :mod:`.hf`: ``hf://`` model directories through ``huggingface_hub`` (an optional extra), and ``push``.

:func:`resolve` is what :func:`vqforge.api.resolve_model_path` asks for a name it does not find on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

TAMING_PREFIX = "taming/"
HF_PREFIX = "hf://"


def is_remote(spec: str) -> bool:
    """Whether ``spec`` names a model by catalogue name or Hub address rather than a path."""
    return spec.startswith((TAMING_PREFIX, HF_PREFIX))


def resolve(spec: str, save: Callable[..., Path], progress: bool = True) -> Path | None:
    """The local model directory of ``taming/NAME`` (downloaded and converted once, written by ``save``:
    :func:`vqforge.api.save_model`) or ``hf://ORG/NAME[@REV]`` (from the Hub's cache, downloading what is
    missing unless offline); None for any other ``spec``."""
    if spec.startswith(TAMING_PREFIX):
        from .taming import pull

        return pull(spec[len(TAMING_PREFIX):], save, progress=progress)
    if spec.startswith(HF_PREFIX):
        from .hf import snapshot

        return snapshot(spec)
    return None
