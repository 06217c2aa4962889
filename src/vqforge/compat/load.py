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
