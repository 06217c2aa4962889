"""Conditioning modes: one file per mode, one interface (:class:`Condition`), registered by name in
:mod:`.registry`. See :mod:`.base` for the interface and docs/architecture.md for how to add a mode.

=============== ============================================ =========================================
mode            model input ``c`` (what ``encode`` takes)    tokens
=============== ============================================ =========================================
unconditional   anything with a batch dimension (the images)  one start token ``sos_token``
class           labels (B,) int64; ``-1`` = the NULL class    one token per image: the label id
segmentation    one-hot maps (B, n_labels, H, W) in {0, 1}   cond-stage VQGAN indices, raster order
depth           depth (B, 1, H, W) in [-1, 1]                cond-stage VQGAN indices, raster order
edges           edge maps (B, 1, H, W) in {-1, 1}            cond-stage VQGAN indices, raster order
lowres          images (B, 3, H/r, W/r) in [-1, 1]           cond-stage VQGAN indices, raster order
coord           coordinates (B, 1, H, W) in [0, 1]           :class:`CoordStage` ids, raster order
tokens          token ids (B, Tc) int64                      passed through (the original's dummy stage)
=============== ============================================ =========================================
"""

from .base import Condition, ConditionConfig, DataFacts, StageTraining
from .classes import ClassCondition, ClassConfig
from .coord import Coord, CoordConfig, CoordStage, coord_map
from .depth import Depth, DepthConfig, normalize_depth, read_depth
from .edges import Edges, EdgesConfig, canny
from .lowres import Lowres, LowresConfig
from .registry import (MODES, add_mode, default_stage_mode, encoded_stage_modes, make_condition, stage_condition,
                       stage_modes)
from .segmentation import Segmentation, SegmentationConfig, colorize_labels, label_palette, one_hot_labels
from .spatial import SpatialCondition, StageCondition, StageConfig
from .tokens import Tokens, TokensConfig
from .unconditional import Unconditional, UnconditionalConfig

__all__ = [
    "Condition", "ConditionConfig", "DataFacts", "StageTraining", "MODES", "add_mode", "make_condition",
    "default_stage_mode", "encoded_stage_modes", "stage_condition", "stage_modes",
    "UnconditionalConfig", "ClassConfig", "SegmentationConfig", "DepthConfig", "EdgesConfig", "LowresConfig",
    "CoordConfig", "TokensConfig", "StageConfig",
    "Unconditional", "ClassCondition", "Segmentation", "Depth", "Edges", "Lowres", "Coord", "Tokens",
    "SpatialCondition", "StageCondition", "CoordStage",
    "coord_map", "one_hot_labels", "normalize_depth", "read_depth", "canny", "colorize_labels", "label_palette",
]
