"""Quantizer kinds by name: ``model.quantizer.kind`` picks one of the config classes registered here, and
that config builds its quantizer (``cfg.build(in_channels)``).

Adding a kind = one module (the quantizer and its ``@dataclass(frozen=True)`` config, a subclass of
:class:`QuantizerConfig` with ``kind: ClassVar[str] = "name"`` and a ``build`` method) + one line below.
"""

from __future__ import annotations

from .base import Quantizer, QuantizerConfig
from .ema import EMAVQConfig
from .fsq import FSQConfig
from .gumbel import GumbelConfig
from .l2 import L2VQConfig
from .vq import VQConfig

KINDS = QuantizerConfig.variants
KINDS.add(VQConfig)
KINDS.add(GumbelConfig)
KINDS.add(EMAVQConfig)
KINDS.add(L2VQConfig)
KINDS.add(FSQConfig)


def build_quantizer(cfg: QuantizerConfig, in_channels: int) -> Quantizer:
    """The quantizer of the kind config ``cfg``, for latents with ``in_channels`` channels."""
    return cfg.build(in_channels)
