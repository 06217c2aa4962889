"""The second stage: a GPT over first-stage codebook indices, with the condition's tokens in front.

:class:`Net2NetTransformer` bundles the frozen first stage (a VQGAN), the frozen condition stage (a VQGAN,
the coordinate stage, or nothing) and the GPT, so that one saved model directory holds the whole pipeline.
Its parameter names are ``first_stage.*``, ``cond_stage.*`` and ``transformer.*`` (the original's
``first_stage_model.*`` / ``cond_stage_model.*`` / ``transformer.*`` minus the ``_model`` suffix).

Token layout (as the original): ``[c_1 .. c_Tc, z_1 .. z_N]`` where condition tokens and image tokens
share ``tok_emb`` and the same id space (a class id 3 and image code 3 use the same embedding row; the
position embedding tells them apart). The GPT therefore needs ``vocab_size`` >= every id used:
the image codebook size, and the condition's ids (start token, class ids plus the NULL class, or the
condition stage's codebook size).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import Condition, ConditionConfig, DataFacts, UnconditionalConfig, make_condition
from .conditioning.base import frozen
from .gpt import GPT, GPTConfig
from .vqgan import VQGAN, VQGANConfig


@dataclass(frozen=True)
class TransformerConfig:
    """The whole second-stage pipeline: GPT, first stage, condition, and training noise ``pkeep``.

    cond: the conditioning mode's config (see :mod:`vqforge.models.conditioning`). pkeep: during training, each
    input image token is kept with probability ``pkeep`` and otherwise replaced by a random image code (the
    original's token noise; 1.0 = off). Targets stay clean. image_size: the (square) image side the transformer
    was trained on; 0 = the first stage's ``ddconfig.resolution`` (the original's convention). ``gpt.vocab_size``
    and ``gpt.block_size`` may be 0: they are then derived (:func:`derive_config`).
    """

    gpt: GPTConfig = field(default_factory=GPTConfig)
    first_stage: VQGANConfig = field(default_factory=VQGANConfig)
    cond: ConditionConfig = field(default_factory=UnconditionalConfig)
    pkeep: float = 1.0
    image_size: int = 0


def trained_hw(cfg: TransformerConfig) -> tuple[int, int]:
    """Image size (H, W) the transformer was trained on (``image_size`` or the first stage's resolution)."""
    r = cfg.image_size or cfg.first_stage.ddconfig.resolution
    return r, r


def fit_problem(n_cond: int, n_image: int, block_size: int, what: str = "") -> str | None:
    """The one "fits in block_size" check: why ``n_cond`` condition and ``n_image`` image tokens do not fit the
    GPT's context (the last image token is never fed), or None."""
    need = n_cond + n_image - 1
    if need <= block_size:
        return None
    return (f"{n_cond} condition + {n_image} image tokens{what} need model.gpt.block_size >= {need}, the GPT has "
            f"{block_size}")


def _derive_block_size(gpt: GPTConfig, cond: Condition, hw: tuple[int, int], f: int) -> tuple[GPTConfig, str | None]:
    """``gpt`` with ``block_size`` derived for images of ``hw`` (first-stage factor ``f``) when 0, or the problem."""
    problem = cond.grid_problem(hw)
    if hw[0] % f or hw[1] % f:
        problem = f"the image size {hw[0]}x{hw[1]} is not a multiple of the first stage's downsampling factor {f}"
    if problem:
        return gpt, problem
    n_cond, n_img = cond.n_tokens(hw), (hw[0] // f) * (hw[1] // f)
    need = n_cond + n_img - 1
    if gpt.block_size == 0:
        return dataclasses.replace(gpt, block_size=need), None
    problem = fit_problem(n_cond, n_img, gpt.block_size, f" ({hw[0]}x{hw[1]} px)")
    return gpt, problem and f"{problem}: set model.gpt.block_size={need} or 0 (derived)"


def derive_config(cfg: TransformerConfig, facts: DataFacts | None = None, strict: bool = True) -> TransformerConfig:
    """``cfg`` with the settings the first stage, the condition and the data determine filled in, checked.

    ``gpt.vocab_size`` (the image codebook and every condition id), ``gpt.block_size`` (condition + image tokens
    - 1 at the trained size) and the condition's own derived settings (e.g. ``cond.n_classes`` from the labels,
    see :meth:`Condition.derive`) are filled where they are 0 and checked where they are set. ``facts``: what
    the training data tells (its image size becomes ``image_size``). Raises ValueError naming every problem,
    each key as the command line accepts it (``model.gpt.vocab_size=1024``). ``strict=False`` (a model being
    loaded) leaves the token counts at the trained size unchecked unless ``block_size`` is to be derived: they
    matter when sampling, whose plan checks them for the size asked for.
    """
    hw = facts.image_hw if facts is not None else trained_hw(cfg)
    if facts is not None and hw[0] == hw[1]:
        cfg = dataclasses.replace(cfg, image_size=int(hw[0]))
    cond, more = make_condition(cfg.cond, hw), []
    if facts is not None:
        derived, more = cond.derive(facts)
        cond = make_condition(derived, hw)
    problems = cond.problems() + more
    if not 0.0 <= cfg.pkeep <= 1.0:
        problems.append(f"model.pkeep must lie in [0, 1], got {cfg.pkeep}")
    if problems:  # the condition's own settings first: the sizes below depend on them
        raise ValueError("; ".join(problems))
    gpt, n_codes = cfg.gpt, cfg.first_stage.quantizer.n_codes
    vocab = max(n_codes, cond.n_ids)
    if gpt.vocab_size == 0:
        gpt = dataclasses.replace(gpt, vocab_size=vocab)
    elif gpt.vocab_size < vocab:
        problems.append(f"model.gpt.vocab_size={gpt.vocab_size} is too small: the image codebook has {n_codes} "
                        f"codes and the condition uses {cond.describe_ids()}; set model.gpt.vocab_size={vocab} "
                        f"or 0 (derived)")
    if strict or gpt.block_size == 0:
        gpt, problem = _derive_block_size(gpt, cond, hw, cfg.first_stage.ddconfig.downsample_factor)
        problems += [problem] if problem else []
    if problems:
        raise ValueError("; ".join(problems))
    return dataclasses.replace(cfg, gpt=gpt, cond=cond.config)


class Net2NetTransformer(nn.Module):
    """First stage + condition stage (both frozen) + GPT.

    Images are float (B, 3, H, W) in [-1, 1]. ``forward(x, c)`` returns the logits for the image
    positions (B, h*w, vocab) and the targets (B, h*w); see :meth:`forward_tokens` for pre-tokenized data.
    ``condition`` is the conditioning mode (:class:`~vqforge.models.conditioning.Condition`); ``config``
    holds the settings derived at construction (:func:`derive_config`).
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        cfg = derive_config(cfg, strict=False)
        self.config = cfg
        self.condition: Condition = make_condition(cfg.cond, trained_hw(cfg), cfg.gpt.vocab_size)
        self.first_stage = frozen(VQGAN(cfg.first_stage))
        self.cond_stage: nn.Module | None = self.condition.build_stage()
        self.condition.stage = self.cond_stage
        self.transformer = GPT(cfg.gpt)

    # ----------------------------------------------------------------------------------- properties
    def train(self, mode: bool = True) -> "Net2NetTransformer":
        """Only the GPT changes mode; the frozen stages stay in eval mode (as the original)."""
        self.training = mode
        self.transformer.train(mode)
        return self

    @property
    def n_image_codes(self) -> int:
        """First-stage codebook size; sampling restricts image logits to ids below it."""
        return self.first_stage.n_codes

    @property
    def null_token(self) -> int | None:
        """Token id of the null condition (classifier-free guidance; the NULL class of class models), or None."""
        return self.condition.null_id

    @property
    def mode(self) -> str:
        """Name of the conditioning mode."""
        return self.condition.name

    @property
    def trained_hw(self) -> tuple[int, int]:
        """Image size (H, W) the transformer was trained on (``config.image_size`` or the first stage's)."""
        return trained_hw(self.config)

    def latent_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Image-token grid (h, w) of an image of size ``image_hw``."""
        f = self.first_stage.downsample_factor
        return image_hw[0] // f, image_hw[1] // f

    def cond_hw(self, image_hw: tuple[int, int]) -> tuple[int, int] | None:
        """Condition-token grid (h, w) for images of size ``image_hw`` (None for non-spatial modes)."""
        return self.condition.grid(image_hw)

    def n_cond_tokens(self, image_hw: tuple[int, int]) -> int:
        """Number of condition tokens in front of the image tokens."""
        return self.condition.n_tokens(image_hw)

    def build_condition(self, images: torch.Tensor | None = None, raw: torch.Tensor | None = None) -> torch.Tensor:
        """Model input condition from raw data (see :meth:`Condition.build_input`)."""
        return self.condition.build_input(images, raw)

    # ------------------------------------------------------------------------------------- encoding
    @torch.no_grad()
    def encode_to_z(self, x: torch.Tensor) -> torch.Tensor:
        """Image tokens (B, h*w) int64 in raster order for images (B, 3, H, W)."""
        return self.first_stage.encode_to_indices(x).flatten(1)

    @torch.no_grad()
    def encode_to_indices(self, x: torch.Tensor) -> torch.Tensor:
        """The first stage's codebook ids (B, h, w) for images (B, C, H, W) in [-1, 1] (as
        :meth:`VQGAN.encode_to_indices <vqforge.models.vqgan.VQGAN.encode_to_indices>`)."""
        return self.first_stage.encode_to_indices(x)

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) from the first stage's codebook ids (B, h, w)."""
        return self.first_stage.decode_indices(indices)

    @torch.no_grad()
    def encode_to_c(self, c: torch.Tensor) -> torch.Tensor:
        """Condition tokens (B, Tc) int64 for the model input condition ``c`` (see :meth:`Condition.encode`;
        class labels equal to ``-1`` map to the NULL class token)."""
        return self.condition.encode(c)

    @torch.no_grad()
    def decode_to_img(self, indices: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Images (B, 3, H, W) from image tokens (B, h*w) laid out on the grid ``hw`` = (h, w)."""
        return self.first_stage.decode_indices(indices.reshape(indices.shape[0], hw[0], hw[1]))

    @torch.no_grad()
    def decode_cond(self, c_indices: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor | None:
        """The condition stage's reconstruction of condition tokens (spatial modes), else None."""
        if self.cond_stage is None:
            return None
        return self.cond_stage.decode_indices(c_indices.reshape(c_indices.shape[0], hw[0], hw[1]))

    # -------------------------------------------------------------------------------------- training
    def forward_tokens(self, z_indices: torch.Tensor, c_indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, N, vocab) for the N image positions and targets (B, N) from token ids.

        In training mode: condition dropout to the null condition (``cond.dropout``, for guidance) and ``pkeep``
        token noise on the inputs, as the original.
        """
        cfg = self.config
        if self.training:
            c_indices = self.condition.drop(c_indices)
        if self.training and cfg.pkeep < 1.0:
            keep = torch.bernoulli(torch.full(z_indices.shape, cfg.pkeep, device=z_indices.device)).bool()
            # NOTE: the original draws noise from the whole vocab_size; we draw image codes only (the same
            # thing whenever vocab_size equals the codebook size, as in all the original's configs).
            noise = torch.randint_like(z_indices, self.n_image_codes)
            inputs = torch.where(keep, z_indices, noise)
        else:
            inputs = z_indices
        cz = torch.cat((c_indices, inputs), dim=1)  # (B, Tc + N)
        logits = self.transformer(cz[:, :-1])  # (B, Tc + N - 1, vocab)
        # output i predicts token i+1: the image positions start at the last condition position
        return logits[:, c_indices.shape[1] - 1:], z_indices

    def forward(self, x: torch.Tensor, c: torch.Tensor, pre_tokenized: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, h*w, vocab) and targets (B, h*w) for images ``x`` and model input condition ``c``.

        With ``pre_tokenized``, ``x`` and ``c`` are already token ids (B, h*w) and (B, Tc).
        """
        if pre_tokenized:
            return self.forward_tokens(x, c)
        return self.forward_tokens(self.encode_to_z(x), self.encode_to_c(c))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy in nats per token."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
