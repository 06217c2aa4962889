"""Model kinds by name: the config class and the module class that a saved model names in its ``kind``.

Add an entry here for each new kind of saved model; nothing else needs to know about it.
"""

from __future__ import annotations

from typing import Any, Callable

from .transformer import Net2NetTransformer, TransformerConfig
from .vqgan import VQGAN, VQGANConfig

#: kind -> (config dataclass, builder taking that config and returning an nn.Module)
MODEL_KINDS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "vqgan": (VQGANConfig, VQGAN),
    "transformer": (TransformerConfig, Net2NetTransformer),
}


def register_kind(kind: str, config_cls: type, builder: Callable[[Any], Any]) -> None:
    """Register a model kind (used by modules that define new saved-model types)."""
    MODEL_KINDS[kind] = (config_cls, builder)


def kind_of(model: Any) -> str:
    """The registered kind name of ``model``."""
    for kind, (cfg_cls, builder) in MODEL_KINDS.items():
        if isinstance(builder, type) and isinstance(model, builder):
            return kind
    raise TypeError(f"{type(model).__name__} is not a registered model kind")
