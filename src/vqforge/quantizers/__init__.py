"""Quantizers behind one interface (:class:`Quantizer`, returning :class:`QuantizerOutput`)."""

from .base import Quantizer, QuantizerOutput, perplexity
from .gumbel import GumbelQuantizer
from .vq import VectorQuantizer

__all__ = ["Quantizer", "QuantizerOutput", "perplexity", "VectorQuantizer", "GumbelQuantizer"]
from .factory import QuantizerConfig, build_quantizer  # noqa: E402

__all__ += ["QuantizerConfig", "build_quantizer"]
