"""Loading the original Taming Transformers configs and checkpoints, unchanged.

The original describes a model with a project YAML (``model.target`` plus ``model.params``) and stores
weights in a PyTorch Lightning ``.ckpt`` (``{"state_dict": {...}, ...}``). :func:`load_taming` reads both
and returns the equivalent vqforge model, with every weight loaded under strict key checks.

This module reads the files and translates the first stage (VQModel / GumbelVQ); :mod:`.net2net` translates
the second stage; :mod:`.load` maps each ``model.target`` to one of them (:func:`~.load.load_taming`).
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, from_dict, notice
from ..io import TRUST_OPTION, VQForgeError, load_torch, read_yaml
from ..models.vqgan import AutoencoderConfig, VQGANConfig
from ..quantizers import QuantizerConfig

#: Checkpoint key prefixes that hold training-only state (skipped with a one-line notice).
TRAINING_ONLY_PREFIXES = ("loss.",)
#: Buffers of the original used only for logging (random colour projections of segmentation maps).
LOGGING_ONLY_KEYS = ("colorize",)

VQ_TARGETS = {
    "taming.models.vqgan.VQModel",
    "taming.models.vqgan.VQSegmentationModel",
    "taming.models.vqgan.VQNoDiscModel",
}
GUMBEL_TARGETS = {"taming.models.vqgan.GumbelVQ"}


# ------------------------------------------------------------------------------------------ config
def read_taming_config(path: str | Path) -> dict:
    """The ``model`` section of an original project YAML (``target`` and ``params``)."""
    path = Path(path)
    if not path.is_file():
        raise VQForgeError(f"{path}: config not found")
    data = read_yaml(path)
    model = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(model, dict) or "target" not in model:
        raise VQForgeError(f"{path}: not a Taming Transformers config (no model.target)")
    if not isinstance(model.get("target"), str):
        raise VQForgeError(f"{path}: model.target must be a class name, got {model['target']!r}")
    if model.get("params") is None:
        model["params"] = {}
    if not isinstance(model["params"], dict):
        raise VQForgeError(f"{path}: model.params must be a mapping, got {model['params']!r}")
    return model


def vqgan_config_from_params(target: str, params: dict, source: str | Path, where: str = "model.params") -> VQGANConfig:
    """A :class:`VQGANConfig` from the ``params`` of a VQModel / VQSegmentationModel / GumbelVQ target
    (``where``: the key of ``params`` in the file, for messages)."""
    for key in ("ddconfig", "n_embed", "embed_dim"):
        if key not in params:
            raise VQForgeError(f"{source}: {where}.{key} is missing")
    if params.get("remap"):
        raise VQForgeError(f"{source}: {where}.remap (index remapping) is not supported by vqforge")
    q = {"n_embed": params["n_embed"], "embed_dim": params["embed_dim"]}
    if target in GUMBEL_TARGETS:
        q.update(kind="gumbel", kl_weight=params.get("kl_weight", 1e-8), temp_init=1.0)
    else:
        # NOTE: the original VQModel always builds its quantizer with legacy=True (beta on the codebook
        # term). A ``legacy`` key in params is a vqforge extension for checkpoints trained with the fix.
        q.update(kind="vq", beta=0.25, legacy=params.get("legacy", True))
    problems = []
    try:
        dd = from_dict(AutoencoderConfig, params["ddconfig"], f"{where}.ddconfig")
    except ConfigError as e:
        problems += e.problems
    try:
        quantizer = from_dict(QuantizerConfig, q, where)
    except ConfigError as e:
        problems += e.problems
    if problems:
        raise VQForgeError(str(ConfigError(problems=problems, source=source)))
    return VQGANConfig(ddconfig=dd, quantizer=quantizer)


# ------------------------------------------------------------------------------------------ weights
def read_lightning_state_dict(path: str | Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a Lightning checkpoint (or a bare state dict), loaded without running code.

    Lightning stores some bookkeeping under its own classes (e.g. callback states keyed by class).
    Those globals are replaced by inert stand-ins (:func:`_load_with_lightning_stubs`); any other
    pickled object is refused with a message that says so, unless ``trust`` (``--trust-checkpoint``).
    """
    ckpt = _load_with_lightning_stubs(Path(path), trust)
    if isinstance(ckpt, dict) and "state_dict" in ckpt and isinstance(ckpt["state_dict"], dict):
        sd = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        sd = ckpt
    else:
        raise VQForgeError(f"{path}: no 'state_dict' in this checkpoint")
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


#: Modules whose pickled classes may be stood in for by inert stubs when reading original checkpoints.
_STUBBABLE_MODULE_PREFIXES = ("pytorch_lightning.", "lightning.", "lightning_fabric.", "omegaconf.")
#: Plain types that such bookkeeping names as values (OmegaConf's metadata: ``object_type=dict``,
#: ``ref_type=typing.Any``); allowed as they are: constructing one runs no code from the file.
_PLAIN_GLOBALS = {f"builtins.{t.__name__}": t for t in (dict, list, tuple, set, int, float, str, bool, object)}
_PLAIN_GLOBALS.update({t.__name__: t for t in (dict, list, tuple, set, int, float, str, bool, object)})
_PLAIN_GLOBALS["typing.Any"] = Any


class _InertStub(dict):
    """Stands in for a bookkeeping class of Lightning/OmegaConf; stores what it is given, runs nothing.

    A dict, so that dict-like containers (Lightning's ``AttributeDict`` of hyper-parameters) fill in as they
    were pickled; other objects (OmegaConf's ``DictConfig`` and its nodes) keep their state in ``state``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _load_with_lightning_stubs(path: Path, trust: bool = False) -> Any:
    """``torch.load(weights_only=True)``, retried with inert stubs for Lightning's and OmegaConf's own globals
    (callback states, ``AttributeDict`` / ``DictConfig`` hyper-parameters). Anything else is refused, naming the
    class that actually blocked the load (not one a stub already stands in for), unless ``trust``."""
    stubs: list[Any] = []
    stubbed: set[str] = set()
    blocked = None
    for _ in range(64):
        try:
            with torch.serialization.safe_globals(stubs):
                return torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise VQForgeError(f"{path}: checkpoint not found") from None
        except Exception as e:  # noqa: BLE001
            name = _unsupported_global(str(e))
            if name and name in _PLAIN_GLOBALS and _PLAIN_GLOBALS[name] not in stubs:
                stubs.append(_PLAIN_GLOBALS[name])
                continue
            if name and name.startswith(_STUBBABLE_MODULE_PREFIXES) and name not in stubbed:
                stubs.append((type(name.rsplit(".", 1)[-1], (_InertStub,), {}), name))
                stubbed.add(name)
                continue
            blocked = name
            break
    if blocked is None and stubbed and not trust:  # e.g. an AttributeDict: a dict subclass, which torch's
        try:  # weights-only reader cannot fill; the same allowlist, read by an unpickler that can
            return _restricted_load(path)
        except pickle.UnpicklingError as e:
            blocked = _unsupported_global(str(e))
        except Exception:  # noqa: BLE001 - a damaged file: load_torch below says so in one line
            pass
    if trust or blocked is None:
        return load_torch(path, trust=trust, offer_trust=True)  # trusted, or the one line for a corrupt file
    raise VQForgeError(
        f"{path}: this checkpoint contains pickled Python objects beyond tensors and plain data ({blocked}"
        f"{'; Lightning/OmegaConf bookkeeping read with inert stand-ins' if stubbed else ''}); vqforge never runs "
        f"pickled code unless told to: if the file comes from a source you trust, pass {TRUST_OPTION} (trust=True "
        f"in Python)")


def _restricted_load(path: Path) -> Any:
    """``torch.load`` through an unpickler that resolves only torch's weights-only allowlist, the plain types above
    and inert stand-ins for Lightning / OmegaConf classes; any other global is refused (nothing is imported or run
    from the file). Unlike torch's weights-only reader it fills dict subclasses (``AttributeDict``)."""
    from torch._weights_only_unpickler import _get_allowed_globals

    allowed = {**_get_allowed_globals(), **_PLAIN_GLOBALS}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            full = f"{module}.{name}"
            if full in allowed:
                return allowed[full]
            if full.startswith(_STUBBABLE_MODULE_PREFIXES):
                return type(name, (_InertStub,), {"__module__": module})
            raise pickle.UnpicklingError(f"Unsupported global: GLOBAL {full}")

    restricted = types.ModuleType("vqforge_restricted_pickle")
    restricted.Unpickler, restricted.load, restricted.__dict__["UnpicklingError"] = (
        Unpickler, lambda f, **kw: Unpickler(f, **kw).load(), pickle.UnpicklingError)
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted)


def _unsupported_global(message: str) -> str | None:
    for line in message.splitlines():
        for marker in ("Unsupported global: GLOBAL ", "unsupported GLOBAL "):
            if marker in line:
                return line.split(marker, 1)[1].split()[0].strip("'\",.")
    return None


def split_state_dict(sd: dict[str, torch.Tensor], source: str | Path) -> dict[str, torch.Tensor]:
    """Drop training-only (``loss.*``) and logging-only keys, with a one-line notice."""
    skipped = [k for k in sd if k.startswith(TRAINING_ONLY_PREFIXES)]
    logging_only = [k for k in sd if k in LOGGING_ONLY_KEYS]
    if skipped:
        notice(f"{source}: skipping {len(skipped)} training-only keys under 'loss.' (discriminator/perceptual loss)")
    return {k: v for k, v in sd.items() if k not in skipped and k not in logging_only}
