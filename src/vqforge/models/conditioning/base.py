"""The one interface of a conditioning mode, and the base of the per-mode configs.

A condition reaches the transformer as a short sequence of token ids placed *before* the image tokens (the
paper's layout). A mode is a :class:`Condition` subclass in a file of its own, with a typed frozen config
(a :class:`ConditionConfig` subclass that names its mode in ``mode``), registered in
:mod:`vqforge.models.conditioning.registry`. It supplies everything the transformer, the sampler, the trainer,
the encoder and the commands need to know about it: its vocabulary, its token grid for an image size, how raw
data becomes tokens, the null condition of classifier-free guidance and its training dropout, how the sliding
window sees its tokens, how its condition files are read, a preview image, checks of its config, the settings
it derives from the data, and how its condition stage is trained (:class:`StageTraining`). Nothing outside the
mode files branches on a mode's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ...config import Variants, flat_record_upgrade

#: config keys are named in messages as the command line accepts them (``model.cond.n_classes=10``)
KEY = "model.cond"

#: the flat ``cond`` record that vqforge wrote before each mode had its own config (model and run directories
#: written then still hold it): every mode's settings and their defaults then
FLAT_RECORD: dict[str, Any] = {
    "sos_token": 0, "n_classes": 0, "null_class": True, "class_dropout": 0.0, "cond_stage": None, "n_labels": 0,
    "downsample_cond_size": -1, "lowres_factor": 4, "coord_n_embed": 1024, "coord_down_factor": 16,
    "canny_sigma": 1.0, "canny_low": 0.1, "canny_high": 0.2,
}
_UPGRADE = flat_record_upgrade(FLAT_RECORD, "a config written before each conditioning mode had its own settings")


def frozen(module: nn.Module) -> nn.Module:
    """``module`` in eval mode with every parameter frozen (the condition and first stages)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


@dataclass(frozen=True)
class ConditionConfig:
    """Base of the per-mode configs. Each mode's config (in its mode's file) extends it and names its mode in
    ``mode: ClassVar[str] = "name"``; a field annotated ``ConditionConfig`` (``TransformerConfig.cond``) holds
    any registered mode, chosen in YAML by ``mode:`` (default ``unconditional``); see :mod:`.registry`.

    An old flat record (:data:`FLAT_RECORD`) reads as the mode it names: that mode's settings are kept (renamed
    ones with a notice), the other modes' settings dropped (a notice where one was not at its old default).
    """

    variants: ClassVar[Variants] = Variants("conditioning mode", tag="mode", default="unconditional", upgrade=_UPGRADE)
    mode: ClassVar[str]

    def __post_init__(self) -> None:
        if "mode" not in vars(type(self)):
            raise TypeError(f"{type(self).__name__} is a base of the conditioning modes' configs; build one mode's "
                            f"config (modes: {', '.join(self.variants.names())}), e.g. ClassConfig(n_classes=10)")


@dataclass(frozen=True)
class StageTraining:
    """How ``vqforge train condition`` trains a mode's condition stage (a VQGAN over the mode's model inputs);
    the trainer (:mod:`vqforge.train.condition`) builds its data, loss and previews from this and the mode.

    The data: photos when the mode computes its input from images (``raw_input`` None), else the mode's own
    condition files, read by its ``read_map`` / ``raw_from_map`` and cut with its ``map_resample``. The model
    input of a batch is the mode's ``build_input`` (the stage learns exactly what it will encode).

    logits: the decoder outputs logits of {0, 1} targets (``x > 0``; binary cross-entropy, and the output bias
    may start at the training maps' log-odds); else it reconstructs the input under an L1 loss. label_ids: the
    condition files hold label ids (``train.label_shift`` moves them modulo 256). preview_name: previews are
    ``images/<preview_name>_NNNNNNN.png`` (empty: the mode's name). The mode's ``stage_metrics`` adds validation
    metrics and its ``displayable`` draws the previews.
    """

    logits: bool = False
    label_ids: bool = False
    preview_name: str = ""


@dataclass(frozen=True)
class DataFacts:
    """What the training data tells about the condition, for derived settings (:meth:`Condition.derive`).

    image_hw: the image size the transformer trains on. label_names: the class names of the data's labels
    (None: the data has no labels). pre_encoded: the data are tokens written by ``vqforge encode``; cond_mode,
    cond_grid, cond_codes: the mode, token grid and codebook size of its condition tokens (None: it has none).
    """

    image_hw: tuple[int, int]
    label_names: tuple[str, ...] | None = None
    pre_encoded: bool = False
    cond_mode: str | None = None
    cond_grid: tuple[int, int] | None = None
    cond_codes: int | None = None


class Condition:
    """A conditioning mode: turns its raw data into the condition tokens in front of the image tokens.

    ``config``: the mode's config; ``trained_hw``: the image size the transformer is trained at (sizes of
    spatial conditions scale with it); ``vocab_size``: the GPT's vocabulary (0 = not known yet). ``stage`` is
    the frozen condition stage (a VQGAN, the coordinate stage, or None), built by :meth:`build_stage` and set by
    the model that owns it (its parameters are the model's ``cond_stage.*``).

    Model input ``c`` is what :meth:`encode` takes (see each mode); tokens are (B, Tc) int64.
    """

    #: the mode's config class; the mode's name is its ``mode`` (set on the class from it)
    Config: ClassVar[type[ConditionConfig]]
    name: ClassVar[str]
    #: what a training item holds besides its image for this mode, and its key in the item: None (the condition
    #: is computed from the image), "label" (a class label per image), "coordinates" (where a crop lies in its
    #: image; optional), "map" (a paired map: only from data pre-encoded by `vqforge encode --cond-data`),
    #: "pre_encoded" (condition tokens, only pre-encoded)
    raw_input: ClassVar[str | None] = None
    #: what the user gives to sample, for messages ("class labels (--class)")
    input_hint: ClassVar[str] = "a condition"
    #: the config switch that gives the mode a learned null condition (None: the mode cannot have one)
    null_key: ClassVar[str | None] = "null_condition"
    #: how ``vqforge train condition`` trains this mode's condition stage (None: it trains none)
    stage_training: ClassVar[StageTraining | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Config" in vars(cls):
            cls.name = cls.Config.mode

    def __init__(self, config: ConditionConfig, trained_hw: tuple[int, int] = (256, 256), vocab_size: int = 0):
        self.config = config
        self.trained_hw = (int(trained_hw[0]), int(trained_hw[1]))
        self.vocab_size = vocab_size
        self.stage: nn.Module | None = None

    def build_stage(self) -> nn.Module | None:
        """A fresh (untrained, frozen) condition stage, or None when the mode has none."""
        return None

    def with_stage(self, stage_config) -> ConditionConfig:
        """The config with the condition-stage VQGAN config ``stage_config`` (``--cond-stage``)."""
        raise ValueError(f"the {self.name} mode takes no condition stage (--cond-stage)")

    # ------------------------------------------------------------------------------------ vocabulary
    @property
    def n_ids(self) -> int:
        """How many token ids the condition uses, null condition included (0: not known)."""
        return 0

    @property
    def null_id(self) -> int | None:
        """Token id of the learned null condition (classifier-free guidance), or None when there is none."""
        return None

    @property
    def dropout(self) -> float:
        """Probability that a training condition is replaced by the null condition."""
        return float(getattr(self.config, "dropout", 0.0))

    def describe_ids(self) -> str:
        """What the condition's ids are, for vocabulary messages."""
        return f"{self.name} condition ids" + (" incl. the null condition" if self.null_id is not None else "")

    # -------------------------------------------------------------------------------------- geometry
    def grid(self, image_hw: tuple[int, int]) -> tuple[int, int] | None:
        """Condition-token grid (h, w) for images of ``image_hw`` (None: the condition is not spatial)."""
        return None

    def n_tokens(self, image_hw: tuple[int, int]) -> int:
        """Number of condition tokens in front of the image tokens of an image of ``image_hw``."""
        g = self.grid(image_hw)
        return 1 if g is None else g[0] * g[1]

    def grid_problem(self, image_hw: tuple[int, int]) -> str | None:
        """Why images of ``image_hw`` cannot have this condition (sizes that do not divide), or None."""
        return None

    def arrange(self, tokens: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """Tokens (B, Tc) as the sliding window takes them: a (B, ch, cw) grid for a spatial condition (windowed
        in lockstep with the image), else unchanged (every window starts with the whole condition)."""
        g = self.grid(image_hw)
        return tokens if g is None else tokens.reshape(tokens.shape[0], *g)

    # ------------------------------------------------------------------------------ inputs and tokens
    def build_input(self, images: torch.Tensor | None = None, raw: torch.Tensor | None = None) -> torch.Tensor:
        """The model input from raw data: ``images`` (B, 3, H, W) in [-1, 1] and/or the mode's ``raw`` data."""
        raise NotImplementedError

    def default_input(self, batch: int, image_hw: tuple[int, int], device=None) -> torch.Tensor | None:
        """The model input when the user gives none (start tokens, coordinates), or None when one is needed."""
        return None

    def encode(self, c: torch.Tensor) -> torch.Tensor:
        """Condition tokens (B, Tc) int64 for the model input ``c``."""
        raise NotImplementedError

    def null(self, tokens: torch.Tensor) -> torch.Tensor:
        """The null condition's tokens in the shape of ``tokens`` (the unconditional branch of guidance)."""
        if self.null_id is None:
            raise ValueError(self.no_null_reason())
        return torch.full_like(tokens, self.null_id)

    def no_null_reason(self) -> str:
        """Why this model cannot be guided, and the fix."""
        if self.null_key is None:
            return f"classifier-free guidance (--cfg) needs a conditional model; this one is {self.name}"
        return (f"classifier-free guidance (--cfg) needs a model trained with a null condition; train one with "
                f"{KEY}.{self.null_key}=true {KEY}.dropout=0.1")

    def drop(self, tokens: torch.Tensor) -> torch.Tensor:
        """Training dropout: each sample's condition becomes the null condition with probability ``dropout``."""
        p = self.dropout
        if p <= 0:
            return tokens
        dropped = torch.rand(tokens.shape[0], 1, device=tokens.device) < p  # (B, 1): whole conditions
        return torch.where(dropped, self.null(tokens), tokens)

    def batch_input(self, batch: dict[str, torch.Tensor], device) -> torch.Tensor:
        """The model input of a training batch: built from its ``image`` and raw input (see :attr:`raw_input`)."""
        images, raw = batch.get("image"), batch.get(self.raw_input) if self.raw_input else None
        return self.build_input(None if images is None else images.to(device), None if raw is None else raw.to(device))

    def batch_tokens(self, batch: dict[str, torch.Tensor], device) -> torch.Tensor:
        """Condition tokens (B, Tc) of a training batch: its pre-encoded ``cond`` tokens, else encoded from its
        model input (:meth:`batch_input`)."""
        if "cond" in batch:
            return batch["cond"].to(device)
        return self.encode(self.batch_input(batch, device))

    def sample_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Condition tokens for a grid of samples logged in training (default: those of the validation batch)."""
        return tokens

    # ------------------------------------------------------------------------------------- files, preview
    def label_inputs(self, labels: list[str] | None) -> list[torch.Tensor] | None:
        """Model inputs (1,) for labels named on the command line (``--class``), or None when the mode takes
        none; ValueError when labels are given to a mode that takes none."""
        if labels:
            raise ValueError(f"--class is for class-conditional models; this model's condition is {self.name}")
        return None

    def input_record(self, c: torch.Tensor) -> dict:
        """What to record about one sample's model input in a settings file (e.g. its class)."""
        return {}

    def read_condition(self, path, image_hw: tuple[int, int] | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        """The model input (1, ...) from one condition file, resized for images of ``image_hw`` (None: the file's
        own size), and the image size it goes with. Raises VQForgeError naming the file."""
        from ...io import VQForgeError

        raise VQForgeError(f"{path}: this model's condition ({self.name}) is not read from files")

    def preview(self, tokens: torch.Tensor, image_hw: tuple[int, int], channels: int) -> torch.Tensor | None:
        """The condition as images (B, channels, H, W) in [-1, 1] for sample grids, or None."""
        return None

    # --------------------------------------------------------------------------------- config checks
    def problems(self) -> list[str]:
        """Everything wrong with the config, each naming its key as the command line does."""
        p = self.dropout
        if not 0.0 <= p < 1.0:
            return [f"{KEY}.dropout must lie in [0, 1), got {p}"]
        if p > 0 and self.null_id is None:
            fix = f"set {KEY}.{self.null_key}=true" if self.null_key else f"set {KEY}.dropout=0"
            return [f"{KEY}.dropout={p} needs a null condition to drop to: {fix}"]
        return []

    def derive(self, facts: DataFacts) -> tuple[ConditionConfig, list[str]]:
        """The config with what the data tells filled in (settings left at 0), and what does not match it."""
        if facts.pre_encoded and facts.cond_mode is not None and facts.cond_mode != self.name:
            return self.config, [f"the tokens hold {facts.cond_mode} condition tokens, the model is "
                                 f"conditioned on {self.name} ({KEY}.mode={self.name})"]
        return self.config, []
