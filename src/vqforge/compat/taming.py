"""Loading the original Taming Transformers configs and checkpoints (filled in below)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..io import VQForgeError, load_torch


def load_taming(config_path, checkpoint_path):
    """Load an original project YAML + Lightning checkpoint (temporary: Net2NetTransformer only)."""
    from .net2net import NET2NET_TARGET, load_net2net

    config_path, checkpoint_path = Path(config_path), Path(checkpoint_path)
    try:
        cfg = yaml.safe_load(config_path.read_text())
    except FileNotFoundError:
        raise VQForgeError(f"{config_path}: config not found") from None
    model_cfg = (cfg or {}).get("model") or {}
    ckpt = load_torch(checkpoint_path)
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    if model_cfg.get("target") == NET2NET_TARGET:
        return load_net2net(model_cfg, sd, checkpoint_path)
    raise NotImplementedError
