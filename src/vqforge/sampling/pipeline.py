"""Sampling with a whole :class:`~vqforge.models.transformer.Net2NetTransformer`: conditions in, images out.

:func:`sample_images` picks plain cached decoding when the token grid fits the trained window and sliding-
window synthesis otherwise; :func:`complete_image` resamples the masked part of an image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.transformer import Net2NetTransformer
from .complete import complete_tokens, token_mask
from .generate import DecodeOptions, sample_tokens
from .processors import SamplingSettings
from .progress import Progress
from .sliding import sample_sliding


@dataclass(frozen=True)
class Layout:
    """Sizes of one sampling job: image pixels, image-token grid, window, condition-token grid (or None)."""

    image_hw: tuple[int, int]
    grid_hw: tuple[int, int]
    window_hw: tuple[int, int]
    cond_hw: tuple[int, int] | None

    @property
    def n_tokens(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1]

    @property
    def sliding(self) -> bool:
        return self.grid_hw[0] > self.window_hw[0] or self.grid_hw[1] > self.window_hw[1]


def trained_hw(model: Net2NetTransformer) -> tuple[int, int]:
    """The image size the first stage was trained at (square ``resolution``)."""
    r = model.first_stage.config.ddconfig.resolution
    return r, r


def layout(model: Net2NetTransformer, image_hw: tuple[int, int] | None = None,
           window: tuple[int, int] | None = None) -> Layout:
    """Plan a job; ``window`` (tokens) defaults to the trained grid: resolution // downsampling factor."""
    f = model.first_stage.downsample_factor
    image_hw = image_hw or trained_hw(model)
    H, W = image_hw
    if H <= 0 or W <= 0 or H % f or W % f:
        raise ValueError(f"size {H}x{W} is not a positive multiple of the model's downsampling factor {f}")
    grid = (H // f, W // f)
    if window is None:
        r = model.first_stage.config.ddconfig.resolution // f
        window = (r, r)
    window = (min(window[0], grid[0]), min(window[1], grid[1]))
    return Layout(image_hw, grid, window, model.cond_hw(image_hw))


def condition_tokens(model: Net2NetTransformer, lay: Layout, batch: int, classes: torch.Tensor | None = None,
                     cond: torch.Tensor | None = None, cfg_scale: float = 0.0
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(cond, uncond) token tensors for a batch: (B, Tc) for global conditions, (B, ch, cw) for spatial ones.

    ``classes`` (B,): class labels (class mode). ``cond``: the model input condition (see
    :meth:`Net2NetTransformer.encode_to_c`) for spatial modes, at ``lay.image_hw`` (coord mode builds its
    own). ``uncond`` is the NULL class when ``cfg_scale > 0``, else None.
    """
    mode = model.mode
    device = model.transformer.pos_emb.device
    uncond = None
    if mode == "unconditional":
        c = torch.full((batch, 1), model.sos_token, dtype=torch.long, device=device)
    elif mode == "class":
        if classes is None:
            raise ValueError("this is a class-conditional model: give the class labels")
        c = model.encode_to_c(classes.to(device).view(-1))  # (B, 1)
        if cfg_scale > 0:
            if model.null_class_token is None:
                raise ValueError("classifier-free guidance needs a model trained with a NULL class")
            uncond = torch.full_like(c, model.null_class_token)
    elif mode == "tokens":
        if cond is None:
            raise ValueError("this model is conditioned on token ids: give them")
        c = cond.long().to(device)
    else:
        if cond is None:
            if mode != "coord":
                raise ValueError(f"this model is conditioned on {mode} maps: give one")
            cond = model.build_condition(images=torch.zeros(batch, 3, *lay.image_hw, device=device))
        c = model.encode_to_c(cond.to(device)).view(batch, *lay.cond_hw)  # (B, ch, cw)
    if cfg_scale > 0 and mode != "class":
        raise ValueError("classifier-free guidance (--cfg) is for class-conditional models")
    return c, uncond


@torch.inference_mode()
def sample_image_tokens(model: Net2NetTransformer, lay: Layout, cond: torch.Tensor, settings: SamplingSettings,
                        generator: torch.Generator | None = None, uncond: torch.Tensor | None = None,
                        decoding: DecodeOptions = DecodeOptions(),
                        callback: Progress | None = None) -> torch.Tensor:
    """Image tokens (B, h, w): plain cached sampling when the grid fits the window, else sliding window.

    ``callback(done, total, tokens (B, h, w))`` after each token (see :mod:`~vqforge.sampling.progress`).
    """
    B = cond.shape[0]
    if not lay.sliding:
        flat = cond.reshape(B, -1)
        un = uncond.reshape(B, -1) if uncond is not None else None
        grid = None if callback is None else (lambda done, total, z: callback(done, total, z.view(B, *lay.grid_hw)))
        z = sample_tokens(model.transformer, flat, lay.n_tokens, settings, generator, un,
                          n_vocab=model.n_image_codes, decoding=decoding, callback=grid)
        return z.view(B, *lay.grid_hw)
    return sample_sliding(model.transformer, cond, lay.grid_hw, lay.window_hw, settings, generator, uncond,
                          n_vocab=model.n_image_codes, decoding=decoding, callback=callback)


@torch.inference_mode()
def sample_images(model: Net2NetTransformer, lay: Layout, cond: torch.Tensor, settings: SamplingSettings,
                  generator: torch.Generator | None = None, uncond: torch.Tensor | None = None,
                  decoding: DecodeOptions = DecodeOptions(), callback: Progress | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (B, 3, H, W) in [-1, 1], tokens (B, h, w)) for one batch of condition tokens."""
    z = sample_image_tokens(model, lay, cond, settings, generator, uncond, decoding, callback)
    return model.decode_to_img(z.flatten(1), lay.grid_hw).clamp(-1, 1), z


@torch.inference_mode()
def complete_image(model: Net2NetTransformer, image: torch.Tensor, mask: torch.Tensor, cond: torch.Tensor,
                   lay: Layout, settings: SamplingSettings, generator: torch.Generator | None = None,
                   uncond: torch.Tensor | None = None, decoding: DecodeOptions = DecodeOptions(),
                   callback: Progress | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Complete ``image`` (B, 3, H, W) in [-1, 1] where ``mask`` (pixels, nonzero = resample) is set.

    Returns (completed images, new tokens (B, h, w), token mask (B, h, w)).
    """
    B = image.shape[0]
    tokens = model.encode_to_z(image).view(B, *lay.grid_hw)
    tmask = token_mask(mask, model.first_stage.downsample_factor).to(tokens.device).expand(B, *lay.grid_hw)
    z = complete_tokens(model.transformer, cond, tokens, tmask, lay.window_hw, settings, generator, uncond,
                        n_vocab=model.n_image_codes, decoding=decoding, callback=callback)
    return model.decode_to_img(z.flatten(1), lay.grid_hw).clamp(-1, 1), z, tmask
