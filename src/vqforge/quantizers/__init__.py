"""Quantizers behind one interface (:class:`Quantizer`, returning :class:`QuantizerOutput`).

Kinds (``model.quantizer.kind``), each with its config beside its module: ``vq`` (:class:`VQConfig`, the
original), ``gumbel`` (:class:`GumbelConfig`), ``ema`` (:class:`EMAVQConfig`), ``l2`` (:class:`L2VQConfig`),
``fsq`` (:class:`FSQConfig`); k-means initialisation, dead-code restart and an entropy penalty are options of
the distance-based kinds (:class:`CodebookOptions`). :mod:`.registry` lists the kinds.
:class:`CodebookUsage` measures how much of a codebook is used.
"""

from .base import Quantizer, QuantizerConfig, QuantizerOutput, perplexity
from .ema import EMAVectorQuantizer, EMAVQConfig
from .entropy import EntropyOptions
from .fsq import FSQConfig, FSQuantizer
from .gumbel import GumbelConfig, GumbelQuantizer
from .l2 import L2VectorQuantizer, L2VQConfig
from .registry import KINDS, build_quantizer
from .usage import CodebookUsage, validation_usage
from .vq import CodebookOptions, VectorQuantizer, VQConfig

__all__ = ["Quantizer", "QuantizerOutput", "QuantizerConfig", "perplexity", "build_quantizer", "KINDS",
           "VectorQuantizer", "VQConfig", "CodebookOptions", "EntropyOptions", "GumbelQuantizer", "GumbelConfig",
           "EMAVectorQuantizer", "EMAVQConfig", "L2VectorQuantizer", "L2VQConfig", "FSQuantizer", "FSQConfig",
           "CodebookUsage", "validation_usage"]
