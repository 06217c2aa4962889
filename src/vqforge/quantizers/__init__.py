"""Quantizers behind one interface (:class:`Quantizer`, returning :class:`QuantizerOutput`).

Kinds (``QuantizerConfig.kind``): ``vq`` (the original), ``gumbel``, ``ema``, ``l2``, ``fsq``; k-means
initialisation, dead-code restart and an entropy penalty are options of the distance-based kinds.
:class:`CodebookUsage` measures how much of a codebook is used.
"""

from .base import Quantizer, QuantizerOutput, perplexity
from .ema import EMAVectorQuantizer
from .fsq import FSQuantizer
from .gumbel import GumbelQuantizer
from .l2 import L2VectorQuantizer
from .usage import CodebookUsage, validation_usage
from .vq import VectorQuantizer

__all__ = ["Quantizer", "QuantizerOutput", "perplexity", "VectorQuantizer", "GumbelQuantizer",
           "EMAVectorQuantizer", "L2VectorQuantizer", "FSQuantizer", "CodebookUsage", "validation_usage"]
from .factory import QuantizerConfig, build_quantizer  # noqa: E402

__all__ += ["QuantizerConfig", "build_quantizer"]
