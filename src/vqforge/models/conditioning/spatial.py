"""What the spatial modes share: a map that goes with the image, encoded to a grid of tokens by a frozen stage.

:class:`SpatialCondition` holds the geometry (the condition grid for any image size, the original's
``downsample_cond_size``), encoding, the learned null condition, reading a condition file and the preview;
:class:`StageCondition` adds the condition-stage VQGAN of the segmentation, depth, edge and low-resolution modes.

Grid rule: the model input of an image of H x W px is ``input_hw`` (the image size; a low-resolution image is
smaller); with ``downsample_cond_size = d`` it is resized (nearest) by the factor that takes the trained size to
``d x d`` (exactly the original's resize at the trained size, the same scale at any other size), then the stage
divides it by its downsampling factor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..vqgan import VQGAN, VQGANConfig
from .base import KEY, Condition, ConditionConfig, DataFacts, frozen


def crop_tokens(encode: Callable[[torch.Tensor], torch.Tensor], c: torch.Tensor,
                boxes: list[tuple[int, int, int, int]], chunk: int = 32) -> torch.Tensor:
    """Tokens (N, B, Tc) of the N equal-size pixel crops ``boxes`` = (r0, r1, c0, c1) of ``c`` (B, C, H, W), each
    crop through ``encode`` ((B', C, h, w) -> (B', ...)) in batches of ``chunk`` crops (x B); an encoder that treats
    each image of a batch alone gives each crop the tokens it gives that crop alone."""
    out = []
    for start in range(0, len(boxes), chunk):
        part = boxes[start:start + chunk]
        tokens = encode(torch.cat([c[..., a:b, d:e] for a, b, d, e in part]))  # (n*B, ...)
        out.append(tokens.reshape(len(part), c.shape[0], -1))
    return torch.cat(out)


class SpatialCondition(Condition):
    """A condition map encoded to a (h, w) token grid in raster order; windowed with the image when sliding.

    Subclasses give the stage's ``factor`` and ``codes`` (ids below ``codes``), and may change
    :meth:`input_hw` (the model input's size for an image size) and the file reading hooks.
    """

    #: resampling filter for condition files resized or cropped: "nearest", "bilinear" or "bicubic"
    map_resample: ClassVar[str] = "bicubic"

    @property
    def factor(self) -> int:
        """Downsampling factor of the condition stage."""
        raise NotImplementedError

    @property
    def codes(self) -> int:
        """Number of ids the condition stage produces."""
        raise NotImplementedError

    @property
    def n_ids(self) -> int:
        return self.codes + (1 if self.null_id is not None else 0)

    @property
    def null_id(self) -> int | None:
        return self.codes if getattr(self.config, "null_condition", False) else None

    # -------------------------------------------------------------------------------------- geometry
    def input_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Size of the model input that goes with images of ``image_hw``."""
        return int(image_hw[0]), int(image_hw[1])

    def image_hw_for(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        """Inverse of :meth:`input_hw`: the image size a model input of ``input_hw`` goes with."""
        return int(input_hw[0]), int(input_hw[1])

    def _scaled(self, input_hw: tuple[int, int]) -> tuple[tuple[int, int], str | None]:
        """(size the model input is encoded at, problem or None) for an input of ``input_hw``."""
        d = self.config.downsample_cond_size
        if d <= 0:
            return input_hw, None
        t = self.input_hw(self.trained_hw)[0]
        h, w = input_hw[0] * d / t, input_hw[1] * d / t
        if h != int(h) or w != int(w):
            return (int(h), int(w)), (f"a {input_hw[0]}x{input_hw[1]} condition does not scale to whole pixels by "
                                      f"{d}/{t} ({KEY}.downsample_cond_size={d} at the trained size {t})")
        return (int(h), int(w)), None

    def grid(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        (h, w), _ = self._scaled(self.input_hw(image_hw))
        return h // self.factor, w // self.factor

    def grid_problem(self, image_hw: tuple[int, int]) -> str | None:
        H, W = image_hw
        ih, iw = self.input_hw(image_hw)
        if self.image_hw_for((ih, iw)) != (H, W):
            return f"{H}x{W} px images have no whole {self.name} condition of {ih}x{iw} px"
        (h, w), problem = self._scaled((ih, iw))
        if problem is None and (h % self.factor or w % self.factor):
            problem = (f"the {self.name} condition of {h}x{w} px is not a multiple of its stage's downsampling "
                       f"factor {self.factor}")
        return problem

    # -------------------------------------------------------------------------------------- encoding
    def encode(self, c: torch.Tensor) -> torch.Tensor:
        if self.config.downsample_cond_size > 0:
            size, _ = self._scaled(tuple(c.shape[-2:]))
            c = F.interpolate(c, size=size)  # NOTE: default (nearest) interpolation, as the original
        return self.stage.encode_to_indices(c).flatten(1)  # (B, h*w)

    def encode_crops(self, c: torch.Tensor, boxes: list[tuple[int, int, int, int]], chunk: int = 32) -> torch.Tensor:
        """Tokens (N, B, Tc) of the N equal-size pixel crops ``boxes`` = (r0, r1, c0, c1) of the model input ``c``
        (B, C, H, W), each as :meth:`encode` gives them for the crop alone (:func:`crop_tokens`)."""
        return crop_tokens(self.encode, c, boxes, chunk)

    def preview(self, tokens: torch.Tensor, image_hw: tuple[int, int], channels: int) -> torch.Tensor | None:
        g = self.grid(image_hw)
        ids = tokens.clamp_max(self.codes - 1).reshape(tokens.shape[0], *g)  # the null id has no code to show
        rec = self.displayable(self.stage.decode_indices(ids))  # (B, C', h', w')
        rec = F.interpolate(rec.float(), size=image_hw, mode="nearest")
        if rec.shape[1] != channels:
            if channels not in (1, 3):
                return None
            rec = rec.mean(1, keepdim=True).expand(-1, channels, -1, -1)
        return rec

    def displayable(self, rec: torch.Tensor) -> torch.Tensor:
        """The stage's reconstruction as an image in [-1, 1] (e.g. label maps coloured)."""
        return rec

    # ----------------------------------------------------------------------------------------- files
    @property
    def map_filter(self) -> int:
        """The PIL filter of :attr:`map_resample`."""
        from PIL import Image

        return {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[self.map_resample]

    def read_map(self, path):
        """One condition file as a PIL image (default: a photo, RGB)."""
        from ...imageio import read_image

        return read_image(path)

    def raw_from_map(self, img, path="") -> torch.Tensor:
        """The mode's raw data from one map read by :meth:`read_map` (default: the image (3, H, W) in [-1, 1])."""
        from ...imageio import pil_to_tensor, to_mode

        return pil_to_tensor(to_mode(img, "RGB"))  # a map given in memory: converted as a file would be

    def input_from_map(self, img, path="") -> torch.Tensor:
        """The model input (1, ...) from one map read by :meth:`read_map`."""
        raw = self.raw_from_map(img, path)[None]
        return self.build_input(images=raw) if self.raw_input is None else self.build_input(raw=raw)

    def read_condition(self, path, image_hw=None):
        return self.condition_from_map(self.read_map(path), image_hw, path)

    def condition_from_map(self, img, image_hw=None, path=""):
        """:meth:`read_condition` for a map already in memory (a PIL image as :meth:`read_map` returns it)."""
        if image_hw is not None:
            ih, iw = self.input_hw(image_hw)
            img = img.resize((iw, ih), self.map_filter)
        x = self.input_from_map(img, path)
        return x, self.image_hw_for(tuple(x.shape[-2:]))

    # -------------------------------------------------------------------------------------- checking
    def derive(self, facts: DataFacts):
        cfg, out = super().derive(facts)
        if facts.pre_encoded:
            want = self.grid(facts.image_hw)
            if facts.cond_grid is None:
                out.append(f"the tokens have no condition tokens for {self.name} conditioning (encode them with "
                           f"`vqforge encode --cond-stage DIR`)")
            elif tuple(facts.cond_grid) != want:
                out.append(f"the tokens' condition grid is {facts.cond_grid[0]}x{facts.cond_grid[1]}, the model's "
                           f"for {facts.image_hw[0]}x{facts.image_hw[1]} px images is {want[0]}x{want[1]}")
            elif facts.cond_codes is not None and facts.cond_codes != self.codes:
                out.append(f"the tokens' condition codebook has {facts.cond_codes} codes, the model's condition "
                           f"stage {self.codes}")
        elif self.raw_input == "map":
            out.append(f"{self.name} conditioning needs paired maps: pre-encode them with `vqforge encode "
                       f"--cond-stage DIR --cond-data MAPS` and train on the tokens")
        return cfg, out


@dataclass(frozen=True)
class StageConfig(ConditionConfig):
    """Settings of every mode whose condition goes through a condition-stage VQGAN.

    cond_stage: the frozen VQGAN (taken from ``--cond-stage`` when training). downsample_cond_size: resize the
    condition to this square size at the trained size before encoding (the original's option; -1 = off; at other
    sizes the map is resized by the same factor). null_condition: a learned null condition exists (token id = the
    stage's codebook size) for classifier-free guidance; dropout: probability that a training condition is
    replaced by it.
    """

    cond_stage: VQGANConfig | None = None
    downsample_cond_size: int = -1
    null_condition: bool = False
    dropout: float = 0.0


class StageCondition(SpatialCondition):
    """A spatial condition encoded by a frozen condition-stage VQGAN (``cond_stage``)."""

    #: input channels the stage must take
    stage_channels: ClassVar[int] = 3

    @classmethod
    def takes_stage(cls, in_channels: int) -> bool:
        """Whether a stage of ``in_channels`` suggests this mode (when a command is not told the mode)."""
        return in_channels == cls.stage_channels

    def expected_channels(self) -> int:
        return self.stage_channels

    @property
    def factor(self) -> int:
        return self.config.cond_stage.ddconfig.downsample_factor

    @property
    def codes(self) -> int:
        return self.config.cond_stage.quantizer.n_codes

    def build_stage(self) -> nn.Module:
        return frozen(VQGAN(self.config.cond_stage))

    def encode_crops(self, c: torch.Tensor, boxes: list[tuple[int, int, int, int]], chunk: int = 32) -> torch.Tensor:
        """As :meth:`SpatialCondition.encode_crops`, with the stage's first convolution run once over the whole
        input (:meth:`~vqforge.models.vqgan.VQGAN.encode_crops_to_indices`): overlapping window crops share it,
        and the crops that go through the stage have its width, not the input's (182 channels for
        segmentation). A resized condition (``downsample_cond_size``), or a mode whose :meth:`encode` does more than
        the stage, is cropped and encoded crop by crop."""
        if self.config.downsample_cond_size > 0 or type(self).encode is not SpatialCondition.encode:
            return super().encode_crops(c, boxes, chunk)
        return self.stage.encode_crops_to_indices(c, boxes, chunk).flatten(2)  # (N, B, h*w)

    def stage_metrics(self, rec: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
        """Validation metrics of a condition stage's reconstruction ``rec`` (B, C, H, W), fp32 decoder outputs,
        of the model inputs ``x`` (means over the batch; see :class:`~.base.StageTraining`)."""
        return {}

    def with_stage(self, stage: VQGANConfig) -> StageConfig:
        return dataclasses.replace(self.config, cond_stage=stage)

    def problems(self) -> list[str]:
        cs = self.config.cond_stage
        if cs is None:
            return [f"the {self.name} mode needs a condition-stage VQGAN ({KEY}.cond_stage; training takes it "
                    f"from --cond-stage DIR)"]
        out = super().problems()
        have, want = cs.ddconfig.in_channels, self.expected_channels()
        if have != want:
            out.append(f"the {self.name} condition stage takes {have} input channels, expected {want}")
        return out

    def derive(self, facts: DataFacts):
        if self.config.cond_stage is None:  # reported by problems()
            return self.config, []
        return super().derive(facts)

