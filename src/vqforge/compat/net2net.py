"""Reading the original's ``Net2NetTransformer`` project YAML + checkpoint into a :class:`Net2NetTransformer`.

The original config (``model.target: taming.models.cond_transformer.Net2NetTransformer``) names three
parts: ``transformer_config`` (minGPT), ``first_stage_config`` (VQModel / GumbelVQ) and
``cond_stage_config`` (a VQModel / VQSegmentationModel, ``SOSProvider``, ``Labelator``, ``CoordStage``,
the dummy stage, or the strings ``__is_unconditional__`` / ``__is_first_stage__``). Only the target
names are read, to pick one of our classes; nothing is imported or executed from them.

Checkpoint keys ``first_stage_model.*``, ``cond_stage_model.*`` and ``transformer.*`` become our
``first_stage.*``, ``cond_stage.*`` and ``transformer.*``; the GPT's ``attn.mask`` buffers, the stages'
``loss.*`` modules and segmentation ``colorize`` buffers are dropped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import ConfigError, from_dict
from ..io import VQForgeError, load_state_dict_strict
from ..models.conditioning import (MODES, ClassConfig, ConditionConfig, CoordConfig, TokensConfig, UnconditionalConfig,
                                   default_stage_mode)
from ..models.gpt import GPTConfig
from ..models.transformer import Net2NetTransformer, TransformerConfig
from ..models.vqgan import VQGANConfig
from .taming import GUMBEL_TARGETS, VQ_TARGETS, vqgan_config_from_params

NET2NET_TARGET = "taming.models.cond_transformer.Net2NetTransformer"
_VQ_TARGETS = VQ_TARGETS | GUMBEL_TARGETS
_COND_TARGETS = {"taming.modules.util.SOSProvider", "taming.modules.util.Labelator",
                 "taming.modules.misc.coord.CoordStage", "taming.models.dummy_cond_stage.DummyCondStage"}
#: the original's ``cond_stage_key`` (the batch key its condition came from) -> our mode, for VQGAN stages
_KEY_TO_MODE = {"segmentation": "segmentation", "depth": "depth", "edges": "edges", "canny": "edges",
                "lowres": "lowres", "LR_image": "lowres", "lr": "lowres"}


def _condition_config(params: dict[str, Any], source: str,
                      vq_config: Callable[..., VQGANConfig]) -> ConditionConfig:
    cond = params.get("cond_stage_config")
    sos = int(params.get("sos_token", 0))
    if params.get("unconditional", False) or cond == "__is_unconditional__":
        return UnconditionalConfig(sos_token=sos)
    if cond == "__is_first_stage__":
        raise VQForgeError(f"{source}: cond_stage_config '__is_first_stage__' (image-to-image with the first "
                           "stage as condition) is not supported")
    if not isinstance(cond, dict) or "target" not in cond:
        raise VQForgeError(f"{source}: model.params.cond_stage_config has no 'target'")
    target, cp = cond["target"], cond.get("params") or {}
    key = params.get("cond_stage_key", "depth")
    if target == "taming.modules.util.SOSProvider":
        return UnconditionalConfig(sos_token=int(cp.get("sos_token", sos)))
    if target == "taming.modules.util.Labelator":
        return ClassConfig(n_classes=int(cp["n_classes"]), null_class=False)
    if target == "taming.modules.misc.coord.CoordStage":
        return CoordConfig(coord_n_embed=int(cp["n_embed"]), coord_down_factor=int(cp["down_factor"]),
                           downsample_cond_size=int(params.get("downsample_cond_size", -1)))
    if target == "taming.models.dummy_cond_stage.DummyCondStage":
        return TokensConfig()
    if target in _VQ_TARGETS:
        vq = vq_config(target, cp, source, "model.params.cond_stage_config.params")
        in_ch = vq.ddconfig.in_channels
        mode = "segmentation" if target.endswith("VQSegmentationModel") else _KEY_TO_MODE.get(key)
        try:
            mode = mode or default_stage_mode(in_ch)
        except ValueError:
            raise VQForgeError(f"{source}: cannot tell the condition of cond_stage_key {key!r} with {in_ch} input "
                               f"channels") from None
        record = {"cond_stage": vq, "downsample_cond_size": int(params.get("downsample_cond_size", -1))}
        if "n_labels" in cp and "n_labels" in {f.name for f in dataclasses.fields(MODES[mode].Config)}:
            record["n_labels"] = int(cp["n_labels"])
        return MODES[mode].Config(**record)
    known = ", ".join(sorted(_COND_TARGETS | _VQ_TARGETS))
    raise VQForgeError(f"{source}: unsupported cond_stage_config target {target!r} (supported: {known}, "
                       "__is_unconditional__)")


def net2net_config(model_cfg: dict[str, Any], source: str,
                   vq_config: Callable[..., VQGANConfig] = vqgan_config_from_params) -> TransformerConfig:
    """Our :class:`TransformerConfig` from the original's ``model`` section (``target`` + ``params``)."""
    params = model_cfg.get("params") or {}
    perm = (params.get("permuter_config") or {}).get("target", "taming.modules.transformer.permuter.Identity")
    if perm != "taming.modules.transformer.permuter.Identity":
        raise VQForgeError(f"{source}: permuter {perm!r} is not supported (only the identity)")
    tp = (params.get("transformer_config") or {}).get("params")
    if not tp:
        raise VQForgeError(f"{source}: model.params.transformer_config.params is missing")
    try:
        gpt = from_dict(GPTConfig, tp, "model.params.transformer_config.params", source=source)
    except ConfigError as e:
        raise VQForgeError(str(e)) from None
    fs = params.get("first_stage_config") or {}
    if not isinstance(fs, dict) or fs.get("target") not in _VQ_TARGETS:
        got = fs.get("target") if isinstance(fs, dict) else fs
        raise VQForgeError(f"{source}: unsupported first_stage_config target {got!r} "
                           f"(supported: {', '.join(sorted(_VQ_TARGETS))})")
    first = vq_config(fs["target"], fs.get("params") or {}, source, "model.params.first_stage_config.params")
    cond = _condition_config(params, source, vq_config)
    cfg = TransformerConfig(gpt=gpt, first_stage=first, cond=cond, pkeep=float(params.get("pkeep", 1.0)))
    return cfg


def net2net_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original Net2NetTransformer state dict to ours (and drop what we do not store)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("first_stage_model."):
            k = "first_stage." + k[len("first_stage_model."):]
        elif k.startswith("cond_stage_model."):
            k = "cond_stage." + k[len("cond_stage_model."):]
        elif not k.startswith("transformer."):
            continue  # e.g. permuter buffers
        stage_local = k.split(".", 1)[1]
        if k.startswith("transformer.") and k.endswith(".attn.mask"):
            continue  # NOTE: the original's causal-mask buffers; SDPA builds the mask
        if not k.startswith("transformer.") and (stage_local.startswith("loss.") or stage_local == "colorize"):
            continue
        out[k] = v
    return out


def build_net2net(model_cfg: dict[str, Any], source: str | Path,
                  vq_config: Callable[..., VQGANConfig] = vqgan_config_from_params) -> Net2NetTransformer:
    """An untrained :class:`Net2NetTransformer` for the original's ``model`` config (errors name ``source``)."""
    cfg = net2net_config(model_cfg, str(source), vq_config)
    try:
        return Net2NetTransformer(cfg)
    except ValueError as e:
        raise VQForgeError(f"{source}: {e}") from None


def load_net2net_weights(model: Net2NetTransformer, state_dict: dict[str, torch.Tensor],
                         source: str | Path) -> Net2NetTransformer:
    """Load the original's checkpoint state dict into ``model`` (strict key and shape checks)."""
    load_state_dict_strict(model, net2net_state_dict(state_dict), source)
    return model.eval()
