"""Saving and loading vqforge models: the one place that turns files into models.

Formats:

* **model directory** (``vqforge convert`` output, or :func:`save_model`): ``model.yaml`` with
  ``format_version``, ``kind`` and ``config``; ``model.safetensors`` with the weights.
* **run directory** (``vqforge train ... --out RUN_DIR``): ``config.yaml`` and
  ``checkpoints/last.pt``, a self-describing checkpoint (see :func:`model_from_checkpoint`).
* a single training checkpoint file (``*.pt``) of that layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch

from .config import ConfigError, dump_yaml, from_dict, to_dict
from .io import (FORMAT_VERSION, VQForgeError, atomic_dir, load_safetensors, load_state_dict_strict, load_torch,
                 save_safetensors, write_text)
from .modeldir import MODEL_WEIGHTS, MODEL_YAML, check_format_version, is_model_dir, read_model_meta
from .models.registry import MODEL_KINDS, kind_of
from .sampling.defaults import (CARD_SAMPLING_KEYS, SAMPLING_DEFAULTS, card_max_scale,  # noqa: F401 (the API's names)
                                card_sampling, sampling_defaults)

LAST_CHECKPOINT = Path("checkpoints") / "last.pt"


def build_model(kind: str, config: dict | Any, source: str | Path = "<config>", where: str = "") -> torch.nn.Module:
    """Build an untrained model of ``kind`` from its config (a dataclass, or plain data found under the key
    ``where`` of the file ``source``)."""
    if kind not in MODEL_KINDS:
        raise VQForgeError(f"{source}: unknown model kind {kind!r} (known: {', '.join(sorted(MODEL_KINDS))})")
    cfg_cls, builder = MODEL_KINDS[kind]
    if not isinstance(config, cfg_cls):
        try:
            config = from_dict(cfg_cls, config, where, source=source)
        except ConfigError as e:
            raise VQForgeError(str(e)) from None
    return builder(config)


def save_model(model: torch.nn.Module, out_dir: str | Path, extra: dict | None = None,
               dtype: torch.dtype | None = None, replaceable: Callable[[Path], bool] | None = None) -> Path:
    """Write ``model`` as a model directory (config YAML + safetensors weights), whole or not at all.

    The two files are written into a temporary sibling folder that then takes the place of ``out_dir``
    (:func:`vqforge.io.atomic_dir`, as the trainers' outputs): a kill at any moment leaves the old model or the new
    one, never new weights beside an old ``model.yaml``. An existing ``out_dir`` is replaced only when it is
    empty or ``replaceable(out_dir)`` (default: it is a model directory); a folder of other files is refused.
    ``dtype`` (e.g. ``torch.float16``) stores floating-point weights in that type (half the size); loading
    always returns a float32 model. Integer buffers are stored as they are.
    """
    out_dir = Path(out_dir)
    kind = kind_of(model)
    meta = {"format_version": FORMAT_VERSION, "kind": kind, "config": to_dict(model.config)}
    if extra:
        meta["extra"] = extra
    state = model.state_dict()
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    with atomic_dir(out_dir, "model directory", replaceable or is_model_dir) as tmp:
        save_safetensors(tmp / MODEL_WEIGHTS, state, metadata={"kind": kind})
        write_text(tmp / MODEL_YAML, dump_yaml(meta))
    return out_dir


def _load_model_dir(path: Path) -> torch.nn.Module:
    meta = read_model_meta(path)
    model = build_model(meta.kind, meta.config, meta.source, "config")
    load_state_dict_strict(model, load_safetensors(path / MODEL_WEIGHTS), path / MODEL_WEIGHTS)
    model.card = meta.card
    return model.eval()


def model_from_checkpoint(ckpt: dict, source: str | Path, use_ema: bool = True) -> torch.nn.Module:
    """Rebuild the model of a training checkpoint.

    A checkpoint is a dict with ``format_version``, ``kind``, ``model_config`` (plain data), ``model``
    (state dict), optionally ``ema`` (state dict of averaged weights, preferred when ``use_ema``),
    ``step``, ``optimizers`` and ``train_config``.
    """
    if not isinstance(ckpt, dict) or "kind" not in ckpt or "model_config" not in ckpt or "model" not in ckpt:
        raise VQForgeError(f"{source}: not a vqforge checkpoint (needs 'kind', 'model_config' and 'model')")
    check_format_version(ckpt.get("format_version"), source)
    model = build_model(ckpt["kind"], ckpt["model_config"], source, "model_config")
    state = ckpt.get("ema") if use_ema and ckpt.get("ema") else ckpt["model"]
    load_state_dict_strict(model, state, source)
    return model.eval()


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file of a run directory (``checkpoints/last.pt``) or the file itself."""
    path = Path(path)
    return path / LAST_CHECKPOINT if path.is_dir() else path


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A model's path: an existing file or directory as given; ``taming/NAME`` (one of the original's released
    models, downloaded and converted into the cache on first use) or ``hf://ORG/NAME[@REVISION]`` (a model
    directory on the Hugging Face Hub) as their local model directory; else the bundled model of that name.

    Raises :class:`VQForgeError` naming the bundled models when none of these exists.
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    from . import bundled, hub

    if hub.is_remote(str(name_or_path)):
        found_remote = hub.resolve(str(name_or_path), save_model)
        assert found_remote is not None
        return found_remote

    found = bundled.find(str(name_or_path))
    if found is not None:
        return found.path
    known = bundled.names()
    hint = f" nor a bundled model ({', '.join(known)})" if known else " (and no bundled models are installed)"
    raise VQForgeError(f"{path}: no such file or directory{hint}")


def pull(name: str, progress: bool = True, keep_download: bool = False, trust: bool = False) -> Path:
    """The model directory of the original's released model ``name`` (``vqforge pull``; ``taming/`` optional),
    downloaded and converted into ``$VQFORGE_HOME`` on first use (:mod:`vqforge.hub.taming`)."""
    from .hub.taming import pull as pull_taming

    return pull_taming(name, save_model, progress=progress, keep_download=keep_download, trust=trust)


def export_model(src: str | Path, out: str | Path) -> Path:
    """The model of a run directory or checkpoint (its EMA weights when it kept them) written as a model
    directory ``out``."""
    return save_model(load(src), out)


class PushResult(NamedTuple):
    """What :func:`push` uploaded (or, for a dry run, would upload): file names and sizes, the model card, the
    commit URL (None for a dry run)."""

    files: list[tuple[str, int]]
    card: str
    url: str | None


def push(src: str | Path, spec: str, out: str | Path | None = None, dry_run: bool = False, private: bool = False,
         revision: str | None = None, token: str | None = None) -> PushResult:
    """Upload ``src`` (a model directory, run directory, checkpoint or bundled model's name) to
    ``hf://ORG/NAME`` with a generated model card (:mod:`vqforge.hub.hf`). The upload is staged in ``out``
    (kept) or a temporary folder; ``dry_run`` stops there."""
    import tempfile

    from .hub import hf

    hf.parse(spec)  # a bad address fails before any work
    path = resolve_model_path(src)
    with tempfile.TemporaryDirectory(prefix="vqforge-push-") as tmp:
        staged = Path(out) if out is not None else Path(tmp)
        staged.mkdir(parents=True, exist_ok=True)
        files = hf.stage_push(path, staged, spec, export_model)
        url = None if dry_run else hf.push(staged, spec, private=private, revision=revision, token=token)
        return PushResult([(f.name, f.stat().st_size) for f in files], (staged / hf.CARD).read_text(), url)


def model_card(name_or_path: str | Path) -> dict:
    """The card a model directory's model.yaml records under ``extra`` (the bundled models': summary, use,
    sampling, ...); {} for a run directory, a checkpoint file, a model without a card or a path that does not
    exist (loading it says why)."""
    try:
        path = resolve_model_path(name_or_path)
        return read_model_meta(path).card if is_model_dir(path) else {}
    except VQForgeError:
        return {}


def load_vqgan(path: str | Path, command: str, trust: bool = False) -> torch.nn.Module:
    """A VQGAN from ``path`` (as :func:`load`); for a transformer pipeline, its first stage. Anything else is a
    one-line error naming ``command``."""
    from .models.vqgan import VQGAN

    model = load(path, trust=trust)
    first = getattr(model, "first_stage", None)
    if not isinstance(model, VQGAN) and isinstance(first, VQGAN):
        model = first  # e.g. `reconstruct --model landscapes`: the pipeline's image autoencoder
    if not isinstance(model, VQGAN):
        raise VQForgeError(f"{path}: {command} needs a VQGAN (or a transformer pipeline and its first stage), "
                           f"this is a {type(model).__name__}")
    return model


def load_transformer(path: str | Path, device: torch.device | str = "cpu", trust: bool = False) -> torch.nn.Module:
    """A transformer pipeline from ``path`` (as :func:`load`) on ``device``, for sampling; any other kind of model
    is a one-line error naming ``path``."""
    from .models.transformer import Net2NetTransformer

    model = load(path, trust=trust)
    if not isinstance(model, Net2NetTransformer):
        raise VQForgeError(f"{path}: sampling needs a transformer model, this is a {type(model).__name__}")
    return model.to(device).eval()


def load(path: str | Path, use_ema: bool = True, trust: bool = False) -> torch.nn.Module:
    """Load a model from a bundled model's name (``"fashion"``; see ``vqforge models``), one of the original's
    released models (``"taming/sflckr"``: downloaded and converted once, see ``vqforge models --available``), a
    model directory on the Hugging Face Hub (``"hf://ORG/NAME[@REVISION]"``), a model directory, a run directory
    or a training checkpoint file.

    The model is returned in eval mode without gradients (``requires_grad`` off: for inference; training builds
    its own) on the CPU, in float32, with its model card as ``model.card`` (a model directory's ``extra``: the
    sampling settings :func:`vqforge.sample` starts from; {} for a run or checkpoint). Errors are
    :class:`VQForgeError` with one line that names the file. A checkpoint that holds pickled Python objects beyond tensors and plain data is
    refused unless ``trust`` (the ``--trust-checkpoint`` option): unpickling it runs code from the file.
    """
    model = _load(resolve_model_path(path), use_ema, trust)
    if not hasattr(model, "card"):
        model.card = {}
    return model.requires_grad_(False)


def _load(path: Path, use_ema: bool, trust: bool) -> torch.nn.Module:
    if is_model_dir(path):
        return _load_model_dir(path)
    if path.is_dir() and not (path / LAST_CHECKPOINT).is_file():
        raise VQForgeError(f"{path}: neither a model directory ({MODEL_YAML}) nor a run directory ({LAST_CHECKPOINT})")
    if path.suffix == ".ckpt":
        raise VQForgeError(f"{path}: an original Taming Transformers checkpoint; use vqforge.load_taming(config, ckpt) "
                           f"or `vqforge convert --config ORIG.yaml --checkpoint {path} --out MODEL_DIR`")
    ckpt_path = resolve_checkpoint(path)
    return model_from_checkpoint(load_torch(ckpt_path, trust=trust, offer_trust=True), ckpt_path, use_ema=use_ema)
