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

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import SPATIAL_MODES, ConditionConfig, CoordStage, build_condition
from .gpt import GPT, GPTConfig
from .vqgan import VQGAN, VQGANConfig


@dataclass(frozen=True)
class TransformerConfig:
    """The whole second-stage pipeline: GPT, first stage, condition, and training noise ``pkeep``.

    pkeep: during training, each input image token is kept with probability ``pkeep`` and otherwise
    replaced by a random image code (the original's token noise; 1.0 = off). Targets stay clean.
    image_size: the (square) image side the transformer was trained on; 0 = the first stage's
    ``ddconfig.resolution`` (the original's convention). See :attr:`Net2NetTransformer.trained_hw`.
    """

    gpt: GPTConfig = field(default_factory=GPTConfig)
    first_stage: VQGANConfig = field(default_factory=VQGANConfig)
    cond: ConditionConfig = field(default_factory=ConditionConfig)
    pkeep: float = 1.0
    image_size: int = 0


def cond_vocab_size(cfg: TransformerConfig) -> int:
    """The smallest vocabulary that covers every condition token id of ``cfg``."""
    c = cfg.cond
    if c.mode == "unconditional":
        return c.sos_token + 1
    if c.mode == "class":
        return c.n_classes + (1 if c.null_class else 0)
    if c.mode == "tokens":
        return 0  # unknown: the data provides ids below vocab_size
    if c.mode == "coord":
        return c.coord_n_embed  # NOTE: ids above are clamped (see Net2NetTransformer.encode_to_c)
    return c.cond_stage.quantizer.n_embed if c.cond_stage is not None else 0


def check_config(cfg: TransformerConfig) -> None:
    """Raise ValueError with a clear message when ``cfg`` is inconsistent."""
    c = cfg.cond
    n_codes = cfg.first_stage.quantizer.n_embed
    need = max(n_codes, cond_vocab_size(cfg))
    if cfg.gpt.vocab_size < need:
        what = {"class": f"{c.n_classes} classes" + (" + 1 NULL class" if c.null_class else ""),
                "unconditional": f"start token {c.sos_token}"}.get(c.mode, f"{c.mode} condition codes")
        raise ValueError(f"gpt.vocab_size={cfg.gpt.vocab_size} is too small: the image codebook has {n_codes} codes "
                         f"and the condition uses {what}; set gpt.vocab_size >= {need}")
    if c.mode == "class" and c.n_classes < 1:
        raise ValueError("cond.n_classes must be >= 1 for class conditioning")
    if c.class_dropout > 0 and not (c.mode == "class" and c.null_class):
        raise ValueError("cond.class_dropout > 0 needs mode 'class' with null_class: true")
    if not 0.0 <= c.class_dropout < 1.0:
        raise ValueError(f"cond.class_dropout must lie in [0, 1), got {c.class_dropout}")
    if not 0.0 <= cfg.pkeep <= 1.0:
        raise ValueError(f"pkeep must lie in [0, 1], got {cfg.pkeep}")
    if c.mode in SPATIAL_MODES:
        if c.cond_stage is None:
            raise ValueError(f"condition mode {c.mode!r} needs a cond_stage VQGAN config")
        want = {"segmentation": c.n_labels, "depth": 1, "edges": 1, "lowres": 3}[c.mode]
        have = c.cond_stage.ddconfig.in_channels
        if c.mode == "segmentation" and c.n_labels < 1:
            raise ValueError("cond.n_labels must be set for segmentation conditioning")
        if have != want:
            raise ValueError(f"the {c.mode} cond_stage takes {have} input channels, expected {want}")
    elif c.cond_stage is not None:
        raise ValueError(f"condition mode {c.mode!r} takes no cond_stage VQGAN")


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class Net2NetTransformer(nn.Module):
    """First stage + condition stage (both frozen) + GPT.

    Images are float (B, 3, H, W) in [-1, 1]. ``forward(x, c)`` returns the logits for the image
    positions (B, h*w, vocab) and the targets (B, h*w); see :meth:`forward_tokens` for pre-tokenized data.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        check_config(cfg)
        self.config = cfg
        self.first_stage = _freeze(VQGAN(cfg.first_stage))
        c = cfg.cond
        if c.mode in SPATIAL_MODES:
            self.cond_stage: nn.Module | None = _freeze(VQGAN(c.cond_stage))
        elif c.mode == "coord":
            self.cond_stage = CoordStage(c.coord_n_embed, c.coord_down_factor)
        else:
            self.cond_stage = None
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
    def null_class_token(self) -> int | None:
        """Token id of the NULL class (classifier-free guidance), or None."""
        c = self.config.cond
        return c.n_classes if c.mode == "class" and c.null_class else None

    @property
    def sos_token(self) -> int:
        return self.config.cond.sos_token

    @property
    def mode(self) -> str:
        return self.config.cond.mode

    @property
    def trained_hw(self) -> tuple[int, int]:
        """Image size (H, W) the transformer was trained on (``config.image_size`` or the first stage's)."""
        r = self.config.image_size or self.config.first_stage.ddconfig.resolution
        return r, r

    def latent_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Image-token grid (h, w) of an image of size ``image_hw``."""
        f = self.first_stage.downsample_factor
        return image_hw[0] // f, image_hw[1] // f

    def cond_hw(self, image_hw: tuple[int, int]) -> tuple[int, int] | None:
        """Condition-token grid (h, w) for images of size ``image_hw`` (None for non-spatial modes)."""
        c = self.config.cond
        if c.mode not in SPATIAL_MODES and c.mode != "coord":
            return None
        H, W = image_hw
        if c.mode == "lowres":
            H, W = H // c.lowres_factor, W // c.lowres_factor
        if c.downsample_cond_size > -1:
            H = W = c.downsample_cond_size
        f = self.cond_stage.downsample_factor
        return H // f, W // f

    def n_cond_tokens(self, image_hw: tuple[int, int]) -> int:
        """Number of condition tokens in front of the image tokens."""
        hw = self.cond_hw(image_hw)
        return 1 if hw is None else hw[0] * hw[1]

    def build_condition(self, images: torch.Tensor | None = None, raw: torch.Tensor | None = None) -> torch.Tensor:
        """Model input condition from raw data (see :func:`vqforge.models.conditioning.build_condition`)."""
        return build_condition(self.config.cond, images, raw)

    # ------------------------------------------------------------------------------------- encoding
    @torch.no_grad()
    def encode_to_z(self, x: torch.Tensor) -> torch.Tensor:
        """Image tokens (B, h*w) int64 in raster order for images (B, 3, H, W)."""
        return self.first_stage.encode_to_indices(x).flatten(1)

    @torch.no_grad()
    def encode_to_c(self, c: torch.Tensor) -> torch.Tensor:
        """Condition tokens (B, Tc) int64 for the model input condition ``c`` (see the module docs).

        Class labels equal to ``-1`` map to the NULL class token.
        """
        cfg = self.config.cond
        if cfg.mode == "unconditional":
            return torch.full((c.shape[0], 1), cfg.sos_token, dtype=torch.long, device=c.device)
        if cfg.mode == "class":
            labels = c.long().view(-1, 1)
            if cfg.n_classes and ((labels < -1) | (labels >= cfg.n_classes)).any():
                raise ValueError(f"class labels must lie in [0, {cfg.n_classes}) or be -1 (NULL class)")
            if (labels < 0).any():
                if self.null_class_token is None:
                    raise ValueError("label -1 (NULL class) used, but this model has no NULL class")
                labels = torch.where(labels < 0, torch.full_like(labels, self.null_class_token), labels)
            return labels
        if cfg.mode == "tokens":
            return c.long().view(c.shape[0], -1)
        if cfg.downsample_cond_size > -1:
            # NOTE: default (nearest) interpolation, as the original
            c = F.interpolate(c, size=(cfg.downsample_cond_size, cfg.downsample_cond_size))
        idx = self.cond_stage.encode_to_indices(c).flatten(1)  # (B, hc*wc)
        if cfg.mode == "coord":
            idx = idx.clamp_max(self.transformer.config.vocab_size - 1)
        return idx

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

        In training mode: label dropout to the NULL class (class mode, ``class_dropout``) and ``pkeep``
        token noise on the inputs, as the original.
        """
        cfg = self.config
        if self.training and cfg.cond.class_dropout > 0 and cfg.cond.mode == "class":
            drop = torch.rand(c_indices.shape, device=c_indices.device) < cfg.cond.class_dropout
            c_indices = torch.where(drop, torch.full_like(c_indices, self.null_class_token), c_indices)
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
