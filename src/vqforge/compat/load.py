"""``load_taming``: an original Taming Transformers project YAML + Lightning checkpoint -> the vqforge model.

Each supported ``model.target`` maps to a builder and a weight loader in :data:`TARGET_BUILDERS` (a plain dict:
the original's dotted target strings are only lookup keys here, never imported): the first stage from
:mod:`.taming`, the second stage from :mod:`.net2net`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ..io import VQForgeError, load_state_dict_strict
from ..models.vqgan import VQGAN
from .net2net import NET2NET_TARGET, build_net2net, load_net2net_weights
from .taming import (GUMBEL_TARGETS, VQ_TARGETS, read_lightning_state_dict, read_taming_config, split_state_dict,
                     vqgan_config_from_params)


def _build_vqgan(target: str, params: dict, source: str) -> VQGAN:
    return VQGAN(vqgan_config_from_params(target, params, source))


def _load_vqgan_weights(model: VQGAN, sd: dict[str, torch.Tensor], source: str) -> VQGAN:
    load_state_dict_strict(model, split_state_dict(sd, source), source)
    return model.eval()


def _build_net2net(target: str, params: dict, source: str) -> torch.nn.Module:
    return build_net2net({"target": target, "params": params}, source)


#: original ``model.target`` -> (untrained model from (target, params, config file),
#:                               weights from (model, checkpoint state dict, checkpoint file))
TARGET_BUILDERS: dict[str, tuple[Callable[[str, dict, str], torch.nn.Module],
                                 Callable[[Any, dict, str], torch.nn.Module]]] = {
    **{t: (_build_vqgan, _load_vqgan_weights) for t in VQ_TARGETS | GUMBEL_TARGETS},
    NET2NET_TARGET: (_build_net2net, load_net2net_weights),
}


def load_taming(config_path: str | Path, checkpoint_path: str | Path, trust: bool = False) -> torch.nn.Module:
    """Load an original Taming Transformers model from its project YAML and Lightning checkpoint.

    Supported ``model.target`` values are the keys of :data:`TARGET_BUILDERS`. The config is checked
    before the checkpoint is read; a class vqforge does not know, missing or unexpected keys, and shapes
    that do not match the config raise :class:`VQForgeError` naming the file and them. ``trust``
    (``--trust-checkpoint``) allows a checkpoint that needs full unpickling (it runs code from the file).
    The model is returned in eval mode without gradients.
    """
    model_cfg = read_taming_config(config_path)
    target = model_cfg["target"]
    if target not in TARGET_BUILDERS:
        raise VQForgeError(f"{config_path}: model.target {target!r} is not supported by vqforge "
                           f"(supported: {', '.join(sorted(TARGET_BUILDERS))})")
    build, load_weights = TARGET_BUILDERS[target]
    model = build(target, model_cfg["params"], str(config_path))
    model = load_weights(model, read_lightning_state_dict(checkpoint_path, trust), str(checkpoint_path))
    return model.eval().requires_grad_(False)  # for inference, as vqforge.load


def convert_taming(config_path: str | Path, checkpoint_path: str | Path, out: str | Path,
                   save: Callable[..., Path], overwrite: bool = False, trust: bool = False) -> tuple[Path, torch.nn.Module]:
    """``vqforge convert``: the original's project YAML + checkpoint -> a vqforge model directory ``out`` (written
    whole or not at all by ``save``, :func:`vqforge.api.save_model`, passed in because the model directory's
    format belongs to ``api``), its card recording where it came from. A non-empty ``out`` is replaced only when
    it is this very conversion written before, or with ``overwrite``; else the refusal comes before any work.
    Returns (the folder, the model)."""
    from ..io import check_output_dir
    from ..modeldir import is_model_dir

    source = {"config": str(config_path), "checkpoint": str(checkpoint_path)}

    def replaceable(path: Path) -> bool:  # this very conversion, written before (re-running it); else overwrite
        return overwrite or _converted_from(path) == source

    out_dir = Path(out)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not replaceable(out_dir):  # refused before any work
        held = "another model" if is_model_dir(out_dir) else "files vqforge did not write"
        raise VQForgeError(f"{out_dir}: exists and holds {held}; choose another --out, or pass --overwrite to "
                           f"replace it (what it holds is lost)")
    check_output_dir(out_dir, "model directory", replaceable)
    model = load_taming(config_path, checkpoint_path, trust=trust)
    return save(model, out, extra={"converted_from": source}, replaceable=replaceable), model


def _converted_from(path: Path) -> dict | None:
    """The ``converted_from`` record of the model directory ``path`` (None if it is not one `convert` wrote)."""
    from ..modeldir import is_model_dir, read_model_meta

    if not is_model_dir(path):
        return None
    try:
        record = read_model_meta(path).card.get("converted_from")
    except VQForgeError:  # a damaged model.yaml: not this conversion
        return None
    return record if isinstance(record, dict) else None
