"""Sampling with a whole :class:`~vqforge.models.transformer.Net2NetTransformer`: conditions in, images out.

:func:`layout` plans a job and checks it can run; :func:`condition_tokens` turns the mode's inputs into condition
tokens (and the null condition's, for guidance); :func:`sample_images` picks plain cached decoding when the token
grid fits the trained window and sliding-window synthesis otherwise; :func:`complete_image` resamples the masked
part of an image; :func:`draw_batches` runs a whole job in batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ..models.transformer import Net2NetTransformer, fit_problem
from .complete import complete_tokens, paste_back, token_mask
from .generate import DecodeOptions, sample_tokens
from .processors import SamplingSettings
from .progress import Progress
from .sliding import WindowedCondition, check_windows, sample_sliding, spatial_cond_tokens
from .tiles import decode_tiled, tile_overlap

#: how a spatial condition larger than the window is encoded: "window" (each window's own crop, as training
#: encoded its crops) or "whole" (the whole input at once, then cut into windows: the original's way)
COND_ENCODINGS = ("window", "whole")


@dataclass(frozen=True)
class Layout:
    """Sizes of one sampling job: image pixels, image-token grid, window, condition-token grid (or None), how
    a spatial condition is encoded when the window slides (one of :data:`COND_ENCODINGS`), and the tiles (tokens)
    the grid is decoded in (None: the whole grid at once; set by :func:`vqforge.sampling.memory.fit_budget` when
    the whole decode does not fit the memory budget) and how many windows a sliding run prefills together (None:
    as many as :data:`~vqforge.sampling.sliding.WINDOW_BATCH_BYTES` allows; 1 when the budget is tight)."""

    image_hw: tuple[int, int]
    grid_hw: tuple[int, int]
    window_hw: tuple[int, int]
    cond_hw: tuple[int, int] | None
    cond_encoding: str = "window"
    decode_tile: tuple[int, int] | None = None
    window_batch: int | None = None

    @property
    def n_tokens(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1]

    @property
    def sliding(self) -> bool:
        return self.grid_hw[0] > self.window_hw[0] or self.grid_hw[1] > self.window_hw[1]


def trained_hw(model: Net2NetTransformer) -> tuple[int, int]:
    """The image size the transformer was trained at (recorded by training; else the first stage's resolution)."""
    return model.trained_hw


def layout(model: Net2NetTransformer, image_hw: tuple[int, int] | None = None,
           window: tuple[int, int] | None = None, cfg_scale: float = 0.0, cond_encoding: str = "window") -> Layout:
    """Plan a job and check that it can run (ValueError naming the fix otherwise), before any token is drawn.

    ``image_hw`` defaults to the trained size; ``window`` (tokens) to the trained grid; ``cfg_scale > 0`` checks
    that the model has a null condition to guide with; ``cond_encoding``: see :data:`COND_ENCODINGS` (it matters
    only for a spatial condition under a sliding window).
    """
    if cond_encoding not in COND_ENCODINGS:
        raise ValueError(f"condition encoding {cond_encoding!r}: choose one of {', '.join(COND_ENCODINGS)}")
    if cfg_scale > 0 and model.condition.null_id is None:
        raise ValueError(model.condition.no_null_reason())
    f = model.first_stage.downsample_factor
    image_hw = tuple(image_hw or model.trained_hw)
    H, W = image_hw
    if H <= 0 or W <= 0 or H % f or W % f:
        raise ValueError(f"size {H}x{W} is not a positive multiple of the model's downsampling factor {f}")
    problem = model.condition.grid_problem(image_hw)
    if problem:
        raise ValueError(f"size {H}x{W}: {problem}")
    grid = (H // f, W // f)
    trained = model.latent_hw(model.trained_hw)
    window = tuple(window or trained)
    window = (min(window[0], grid[0]), min(window[1], grid[1]))
    lay = Layout(image_hw, grid, window, model.cond_hw(image_hw), cond_encoding)
    n_cond = model.n_cond_tokens(image_hw)
    if lay.cond_hw is not None:  # a spatial condition: the windows' share of it, on whole condition tokens
        check_windows(grid, window, lay.cond_hw)
        n_cond = spatial_cond_tokens(lay.cond_hw, grid, window)  # from the shapes: nothing of the grid's size
    what = f" (a {window[0]}x{window[1]} window)" if lay.sliding else f" ({H}x{W} px)"
    problem = fit_problem(n_cond, window[0] * window[1], model.config.gpt.block_size, what)
    if problem:
        raise ValueError(f"{problem}; sample at most the trained size {model.trained_hw[0]}x{model.trained_hw[1]} "
                         f"or a smaller --window")
    return lay


def condition_tokens(model: Net2NetTransformer, lay: Layout, batch: int, cond: torch.Tensor | None = None,
                     cfg_scale: float = 0.0, classes: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor | WindowedCondition, torch.Tensor | None]:
    """(cond, uncond) tokens for a batch: (B, Tc) for global conditions, (B, ch, cw) for spatial ones, or for a
    spatial condition under a sliding window with ``lay.cond_encoding == "window"``, a
    :class:`~vqforge.sampling.sliding.WindowedCondition` that encodes each window's crop of the input.

    ``cond``: the model input (see :meth:`Net2NetTransformer.encode_to_c`: class labels, maps at
    ``lay.image_hw``, ...); ``classes`` is another name for it. Without either, the mode's default input is used
    (start tokens, coordinates), or ValueError says what to give. ``uncond``: the null condition's tokens when
    ``cfg_scale > 0`` (ValueError naming the fix when the model has none), else None.
    """
    condition = model.condition
    device = model.transformer.pos_emb.device
    c = cond if cond is not None else classes
    if c is None:
        c = condition.default_input(batch, lay.image_hw, device)
        if c is None:
            raise ValueError(f"this model is conditioned on {condition.input_hint}: give them")
    c = c.to(device)
    tokens = condition.arrange(model.encode_to_c(c), lay.image_hw)  # (B, Tc) or (B, ch, cw)
    uncond = condition.null(tokens) if cfg_scale > 0 else None
    if tokens.dim() == 3 and lay.sliding and lay.cond_encoding == "window":
        # NOTE: the original encodes the whole map once (cond_encoding="whole" keeps that)
        return WindowedCondition(c, tokens, model.encode_to_c, condition.encode_crops), uncond
    return tokens, uncond


@torch.inference_mode()
def sample_image_tokens(model: Net2NetTransformer, lay: Layout, cond: torch.Tensor | WindowedCondition,
                        settings: SamplingSettings,
                        generator: torch.Generator | None = None, uncond: torch.Tensor | None = None,
                        decoding: DecodeOptions = DecodeOptions(),
                        callback: Progress | None = None) -> torch.Tensor:
    """Image tokens (B, h, w): plain cached sampling when the grid fits the window, else sliding window.

    ``callback(done, total, tokens (B, h, w))`` after each token (see :mod:`~vqforge.sampling.progress`).
    """
    if not lay.sliding:
        B = cond.shape[0]
        flat = cond.reshape(B, -1)
        un = uncond.reshape(B, -1) if uncond is not None else None
        grid = None if callback is None else (lambda done, total, z: callback(done, total, z.view(B, *lay.grid_hw)))
        z = sample_tokens(model.transformer, flat, lay.n_tokens, settings, generator, un,
                          n_vocab=model.n_image_codes, decoding=decoding, callback=grid)
        return z.view(B, *lay.grid_hw)
    return sample_sliding(model.transformer, cond, lay.grid_hw, lay.window_hw, settings, generator, uncond,
                          n_vocab=model.n_image_codes, decoding=decoding, callback=callback,
                          window_batch=lay.window_batch)


@torch.inference_mode()
def decode_tokens(model: Net2NetTransformer, z: torch.Tensor, lay: Layout) -> torch.Tensor:
    """Images (B, C, H, W) in [-1, 1] from tokens ``z`` (B, h, w) or (B, h*w): the whole grid at once, or in the
    tiles ``lay.decode_tile`` names (:func:`.tiles.decode_tiled`)."""
    z = z.reshape(z.shape[0], *lay.grid_hw)
    if lay.decode_tile is None:
        return model.decode_to_img(z.flatten(1), lay.grid_hw).clamp(-1, 1)
    return decode_tiled(model.first_stage, z, lay.decode_tile, tile_overlap(lay.decode_tile)).clamp(-1, 1)


@torch.inference_mode()
def sample_images(model: Net2NetTransformer, lay: Layout, cond: torch.Tensor | WindowedCondition,
                  settings: SamplingSettings,
                  generator: torch.Generator | None = None, uncond: torch.Tensor | None = None,
                  decoding: DecodeOptions = DecodeOptions(), callback: Progress | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (B, 3, H, W) in [-1, 1], tokens (B, h, w)) for one batch of condition tokens."""
    z = sample_image_tokens(model, lay, cond, settings, generator, uncond, decoding, callback)
    return decode_tokens(model, z, lay), z


@torch.inference_mode()
def complete_image(model: Net2NetTransformer, image: torch.Tensor, mask: torch.Tensor,
                   cond: torch.Tensor | WindowedCondition,
                   lay: Layout, settings: SamplingSettings, generator: torch.Generator | None = None,
                   uncond: torch.Tensor | None = None, decoding: DecodeOptions = DecodeOptions(),
                   callback: Progress | None = None, feather: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Complete ``image`` (B, 3, H, W) in [-1, 1] where ``mask`` (pixels, nonzero = resample) is set.

    ``feather``: the original pixels are pasted back outside the mask, over a seam of this many pixels inside it
    (:func:`~vqforge.sampling.complete.paste_back`; None: half the downsampling factor); a negative value keeps
    the raw decode, whose unmasked part is the first stage's reconstruction of the image.
    Returns (completed images, new tokens (B, h, w), token mask (B, h, w)).
    """
    B = image.shape[0]
    tokens = model.encode_to_z(image).view(B, *lay.grid_hw)
    tmask = token_mask(mask, model.first_stage.downsample_factor).to(tokens.device).expand(B, *lay.grid_hw)
    z = complete_tokens(model.transformer, cond, tokens, tmask, lay.window_hw, settings, generator, uncond,
                        n_vocab=model.n_image_codes, decoding=decoding, callback=callback)
    out = decode_tokens(model, z, lay)
    f = model.first_stage.downsample_factor
    feather = f // 2 if feather is None else feather
    if feather >= 0:
        out = paste_back(image, out, mask.reshape(-1, 1, *mask.shape[-2:]), feather)
    return out, z, tmask


def draw_batches(model: Net2NetTransformer, lay: Layout, inputs: list[torch.Tensor | None], n: int,
                 batch_size: int, settings: SamplingSettings, generator: torch.Generator | None = None,
                 image: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                 decoding: DecodeOptions = DecodeOptions(), callback: Progress | None = None,
                 feather: int | None = None) -> Iterator[tuple[list[int], torch.Tensor]]:
    """``n`` samples, or completions of ``image`` (3, H, W) where ``mask`` (H, W) is set, in batches of up to
    ``batch_size``: yields (which of ``inputs`` each sample used, images (B, 3, H, W) in [-1, 1]).

    ``inputs``: per-sample model inputs (1, ...) used in turn (``[None]``: the mode's default input), e.g. from
    :func:`vqforge.sampling.conditions.condition_inputs`. Guidance follows ``settings.cfg_scale``. ``feather``: a
    completion's paste-back seam (:func:`complete_image`; negative: the raw decode).
    """
    device = model.transformer.pos_emb.device
    for start in range(0, n, batch_size):
        picks = [i % len(inputs) for i in range(start, min(n, start + batch_size))]
        batch = [inputs[j] for j in picks]
        c = None if batch[0] is None else torch.cat(batch)
        cond, uncond = condition_tokens(model, lay, len(picks), c, settings.cfg_scale)
        if image is None:
            x, _ = sample_images(model, lay, cond, settings, generator, uncond, decoding, callback)
        else:
            x = image[None].expand(len(picks), -1, -1, -1).to(device)
            x, _, _ = complete_image(model, x, mask.to(device), cond, lay, settings, generator, uncond, decoding,
                                     callback, feather)
        yield picks, x
