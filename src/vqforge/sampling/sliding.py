"""Sliding-window synthesis: token grids larger than the transformer was trained on (the paper's Sec. 3.2).

Every token (i, j) of an h x w grid is predicted by the GPT from a window of ``wh x ww`` tokens (the trained
grid), placed by the original's rule (:func:`window_offset`): the window follows the token, keeping it in the
window's middle row/column, except near the borders, where the window stops at the grid's edge. Condition
tokens are windowed in lockstep and come first (a start or class token, which is global, is used as is).

A condition grid at an integer ratio to the image grid is windowed at the same relative place: a grid k times
larger by k times the window; a grid k times smaller by 1/k of it, with window starts aligned to multiples of k
(the rule's start, moved back to the nearest multiple), so that every window covers whole condition tokens, as
the trained windows did. With equal grids (the original's case) nothing moves.

Spatial condition tokens come either as one grid for the whole condition input (cut into windows; the
original's way) or as a :class:`WindowedCondition`, which encodes each window's own crop of the input, as the
transformer's training crops were encoded.

Every window of a row of targets sees the same rows above the targets' row, all drawn before that row starts:
the windows the row visits are prefilled together (their condition and those rows), in one batch of
:data:`WINDOW_BATCH_BYTES` at most; then each target feeds its own window only the tokens written since it was last
fed (the targets' row up to the target) and draws. Where consecutive rows keep their windows (near the top and
bottom, or a window as tall as the grid) the windows keep their caches and are fed only what is new, so a window
that covers the whole grid costs exactly what plain cached sampling costs. The draws come in raster order, as the
original's loop makes them: a seed gives the tokens a fresh forward of every window gives (``reuse_cache=False``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable

import torch

from ..models.conditioning.spatial import crop_tokens
from ..models.footprint import gpt_bytes
from ..models.gpt import GPT
from ..models.transformer import fit_problem
from .generate import DecodeOptions, DecodeSession, guidance_batch
from .processors import SamplingSettings, next_token
from .progress import Progress


def window_offset(i: int, n: int, w: int) -> int:
    """Where index ``i`` of a grid of ``n`` sits inside a window of ``w`` (the original's placement rule).

    ``i`` when ``i <= w/2``; ``w - (n - i)`` when ``n - i < w/2``; else ``w // 2`` (for the original's even
    windows, e.g. 16 with 8, exactly its rule; comparisons use the real half so odd windows stay on the grid).
    A grid no larger than the window gives ``i``.
    """
    if n <= w or 2 * i <= w:
        return i
    if 2 * (n - i) < w:
        return w - (n - i)
    return w // 2


def window_bounds(i: int, n: int, w: int, align: int = 1) -> tuple[int, int]:
    """(start, local): the window covering index ``i`` starts at ``start``; ``i`` is at ``local`` inside it.

    ``align``: starts are moved back to a multiple of it (see the module docs; 1 = the original's rule).
    """
    w = min(w, n)
    start = i - window_offset(i, n, w)
    start -= start % align
    return start, i - start


def window_align(n: int, cn: int, w: int, axis: str = "row") -> int:
    """The alignment of window starts along one axis: a window of ``w`` of ``n`` image tokens must cover whole
    tokens of a condition grid of ``cn`` (1 when it always does). ValueError naming the fix when it cannot."""
    if w >= n or cn == n:
        return 1
    if cn > n:
        if cn % n:
            raise ValueError(f"the condition grid's {cn} {axis}s are not a multiple of the image grid's {n}: the "
                             f"sliding window needs an integer ratio between the grids (choose a size or a condition "
                             f"stage whose downsampling factor divides evenly)")
        return 1
    if n % cn:
        raise ValueError(f"the image grid's {n} {axis}s are not a multiple of the condition grid's {cn}: the sliding "
                         f"window needs an integer ratio between the grids (choose a size or a condition stage whose "
                         f"downsampling factor divides evenly)")
    k = n // cn
    if w % k:
        raise ValueError(f"a window of {w} {axis}s does not cover whole condition tokens ({k} image tokens each): "
                         f"use a --window that is a multiple of {k}")
    return k


def check_windows(grid_hw: tuple[int, int], window_hw: tuple[int, int], cond_hw: tuple[int, int]
                  ) -> tuple[int, int]:
    """Window-start alignment (rows, columns) for a spatial condition grid ``cond_hw``; ValueError when the
    windows cannot cover whole condition tokens."""
    return (window_align(grid_hw[0], cond_hw[0], window_hw[0], "row"),
            window_align(grid_hw[1], cond_hw[1], window_hw[1], "column"))


def _cond_span(a: int, b: int, n: int, cn: int) -> tuple[int, int]:
    """Condition indices [a', b') for image indices [a, b) of an axis of ``n`` (condition axis of ``cn``)."""
    if a == 0 and b == n:
        return 0, cn
    if (a * cn) % n or (b * cn) % n:
        raise ValueError(f"image tokens [{a}, {b}) of {n} do not fall on whole condition tokens ({cn}); plan the "
                         f"job with vqforge.sampling.layout, which checks this")
    return a * cn // n, b * cn // n


@dataclass
class WindowedCondition:
    """A spatial condition encoded window by window: a window's condition tokens are ``encode``'s of its own crop
    of ``inputs`` (the model input, (B, C, H, W) at the image's size), each encoded once, when first needed;
    ``grid`` (B, ch, cw) holds the tokens of the whole input (for shapes and the null condition).
    :func:`sample_sliding` encodes all the windows it will visit in one batch first (:meth:`prepare`).

    A condition stage with attention or group normalisation (every VQGAN) gives a patch of a large map other
    tokens than the same patch inside a window-sized crop: 15-24% of them agree on the bundled landscapes'
    held-out maps at 128 px (bench/landscape_condition_check.py). The transformer was trained on crops encoded
    alone (``vqforge encode --crops``, as the original's training did), so a window's own crop gives it the
    tokens it learnt from; the whole map's tokens follow the map far less (docs/models.md).
    """

    inputs: torch.Tensor
    grid: torch.Tensor
    encode: Callable[[torch.Tensor], torch.Tensor]  # (B, C, h, w) crop of ``inputs`` -> tokens (B, Tc)
    #: (inputs, N equal-size pixel boxes (r0, r1, c0, c1), chunk) -> tokens (N, B, Tc) of each crop encoded alone
    #: (a condition's ``encode_crops``, which may share work between overlapping crops); None: crop by crop
    #: through ``encode`` (:func:`~vqforge.models.conditioning.spatial.crop_tokens`)
    encode_crops: Callable[[torch.Tensor, list, int], torch.Tensor] | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> torch.Size:
        """The shape of the token grid, (B, ch, cw), as for a grid tensor."""
        return self.grid.shape

    def _box(self, key: tuple[tuple[int, int], tuple[int, int]]) -> tuple[int, int, int, int]:
        """The pixel box (r0, r1, c0, c1) of ``inputs`` under condition-token window ``key`` = (rows, cols)."""
        (r0, r1), (c0, c1) = key
        fh, fw = self.inputs.shape[-2] // self.grid.shape[1], self.inputs.shape[-1] // self.grid.shape[2]
        return r0 * fh, r1 * fh, c0 * fw, c1 * fw

    def _crop(self, key: tuple[tuple[int, int], tuple[int, int]]) -> torch.Tensor:
        """The input crop (B, C, h, w) under condition-token window ``key`` = (rows, cols)."""
        r0, r1, c0, c1 = self._box(key)
        return self.inputs[..., r0:r1, c0:c1]

    def window(self, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
        """Tokens (B, Tc_window) of the condition-token window ``rows`` x ``cols`` (encoded now unless
        :meth:`prepare` encoded it)."""
        key = (rows, cols)
        if key not in self._cache:
            self._cache[key] = self.encode(self._crop(key)).reshape(self.grid.shape[0], -1)
        return self._cache[key]

    def prepare(self, keys, chunk: int = 32) -> None:
        """Encode the windows ``keys`` ((rows, cols) pairs) not encoded yet, their crops through the condition
        stage together: batches of up to ``chunk`` windows (x B inputs) of equal size (through ``encode_crops``
        when given, all the windows of one size in one call). The tokens are those of one window at a time (the
        stage treats each crop of a batch alone)."""
        by_size: dict[tuple[int, int], list] = {}
        for key in dict.fromkeys(keys):
            if key not in self._cache:
                (r0, r1), (c0, c1) = key
                by_size.setdefault((r1 - r0, c1 - c0), []).append(key)
        encode_crops = self.encode_crops or partial(crop_tokens, self.encode)
        for group in by_size.values():
            tokens = encode_crops(self.inputs, [self._box(k) for k in group], chunk)  # (N, B, Tc)
            self._cache.update(zip(group, tokens))


def token_grid(cond: torch.Tensor | WindowedCondition) -> torch.Tensor:
    """The condition tokens as one tensor: (B, Tc) global or (B, ch, cw) spatial (a windowed condition's whole-input
    grid), for shapes and devices."""
    return cond.grid if isinstance(cond, WindowedCondition) else cond


def cond_window(cond: torch.Tensor | WindowedCondition, grid_hw: tuple[int, int], rows: tuple[int, int],
                cols: tuple[int, int]) -> torch.Tensor:
    """The condition tokens (B, Tc_window) that go with the image-token window ``rows`` x ``cols``.

    ``cond`` is (B, Tc) for a global condition (start / class token: returned unchanged), a token grid
    (B, ch, cw) for a spatial one, windowed in lockstep at the same relative place (see the module docs), or a
    :class:`WindowedCondition`, which encodes that place of its input.
    """
    grid = token_grid(cond)
    if grid.dim() == 2:
        return grid
    B, ch, cw = grid.shape
    r0, r1 = _cond_span(rows[0], rows[1], grid_hw[0], ch)
    c0, c1 = _cond_span(cols[0], cols[1], grid_hw[1], cw)
    if isinstance(cond, WindowedCondition):
        return cond.window((r0, r1), (c0, c1))
    return grid[:, r0:r1, c0:c1].reshape(B, -1)


def window_starts(grid_hw: tuple[int, int], window_hw: tuple[int, int], align: tuple[int, int] = (1, 1),
                  todo: torch.Tensor | None = None) -> list[tuple[int, int]]:
    """The distinct window starts (i0, j0) that raster-order sampling of the ``todo`` (h, w) positions (default:
    all) visits, in order of first use."""
    h, w = grid_hw
    wh, ww = min(window_hw[0], h), min(window_hw[1], w)
    starts: dict[tuple[int, int], None] = {}
    for i in range(h):
        i0 = window_bounds(i, h, wh, align[0])[0]
        for j in range(w):
            if todo is None or todo[i, j]:
                starts[(i0, window_bounds(j, w, ww, align[1])[0])] = None
    return list(starts)


def cond_tokens_per_window(cond: torch.Tensor | WindowedCondition, grid_hw: tuple[int, int],
                           window_hw: tuple[int, int]) -> int:
    """How many condition tokens precede each window."""
    wh, ww = min(window_hw[0], grid_hw[0]), min(window_hw[1], grid_hw[1])
    return cond_window(cond, grid_hw, (0, wh), (0, ww)).shape[1]


def spatial_cond_tokens(cond_hw: tuple[int, int], grid_hw: tuple[int, int], window_hw: tuple[int, int]) -> int:
    """How many tokens of a (ch, cw) spatial condition grid go with each window: :func:`cond_tokens_per_window`
    from the shapes alone (planning at any size allocates nothing of it)."""
    wh, ww = min(window_hw[0], grid_hw[0]), min(window_hw[1], grid_hw[1])
    r0, r1 = _cond_span(0, wh, grid_hw[0], cond_hw[0])
    c0, c1 = _cond_span(0, ww, grid_hw[1], cond_hw[1])
    return (r1 - r0) * (c1 - c0)


#: What the windows prefilled together may take (their caches and one prefill's activations, as
#: :func:`~vqforge.models.footprint.gpt_bytes` counts them): every window a row of targets visits goes into one
#: batch when they fit, else as many as do (at least one). The memory estimate (:mod:`.memory`) counts the same.
WINDOW_BATCH_BYTES = 256 * 2**20


def row_windows(grid_hw: tuple[int, int], window_hw: tuple[int, int], align: int = 1) -> int:
    """The most distinct windows one row of targets visits: the window starts along the columns, every one from 0
    to ``w - ww`` (their multiples of ``align``), from the shapes alone (planning at any size)."""
    w = grid_hw[1]
    return (w - min(window_hw[1], w)) // align + 1


def window_batch(cfg, rows: int, length: int, n_windows: int) -> int:
    """How many windows of ``rows`` sequences of ``length`` positions (GPT config ``cfg``) one batched prefill
    takes: all ``n_windows`` when they fit :data:`WINDOW_BATCH_BYTES`, else as many as do (at least one)."""
    return max(1, min(n_windows, WINDOW_BATCH_BYTES // max(1, gpt_bytes(cfg, rows, length))))


class _Windows:
    """The caches of a batch of windows of one row of targets, by window start: window k owns the session's
    batch rows [k * rows, (k + 1) * rows) and has been fed its positions [0, fed[k]).

    :meth:`fill` brings every window up to the start of the targets' row inside it (the condition and the whole
    rows above: known before the row's first token is drawn) in one batched prefill; :meth:`advance` then feeds
    one window what was written since and returns the logits for its next target. A window is only ever fed
    final tokens (raster order), so its cache holds exactly what a fresh forward of it would compute.
    """

    def __init__(self, dec: DecodeSession, tokens: torch.Tensor, cond, uncond, grid_hw, window_hw, Tc: int,
                 guided: bool):
        self.dec, self.tokens, self.cond, self.uncond = dec, tokens, cond, uncond
        self.grid_hw, self.window_hw, self.Tc = grid_hw, window_hw, Tc
        self.rows = 2 * tokens.shape[0] if guided else tokens.shape[0]
        self.both = (lambda x: torch.cat((x, x))) if guided else (lambda x: x)  # the same image tokens twice
        self.keys: list[tuple[int, int]] = []
        self.fed: list[int] = []
        self.logits: list[torch.Tensor] = []

    def _image(self, key: tuple[int, int]) -> torch.Tensor:
        """The window's image tokens (B, wh*ww), row-major."""
        (i0, j0), (wh, ww) = key, self.window_hw
        return self.tokens[:, i0:i0 + wh, j0:j0 + ww].reshape(self.tokens.shape[0], -1)

    def fill(self, keys: list[tuple[int, int]], li: int) -> None:
        """Feed each window of ``keys`` its positions up to the start of its row ``li``; windows the batch held
        for the row before (the same keys: near the top and bottom the window stays) are fed only what is new."""
        target = self.Tc + li * self.window_hw[1]
        dec = self.dec.rows(0, len(keys) * self.rows)
        start = min(self.fed + [target - 1]) if keys == self.keys else 0
        if start >= self.Tc:
            feed = torch.cat([self.both(self._image(k)[:, start - self.Tc:target - self.Tc]) for k in keys])
        else:
            start = 0
            feed = torch.cat([torch.cat((self._cond(k), self.both(self._image(k)[:, :target - self.Tc])), 1)
                              for k in keys])  # (n * rows, target)
        self.logits = list(dec.prefill(feed, start=start).split(self.rows))  # each (rows, V)
        self.keys, self.fed = list(keys), [target] * len(keys)

    def _cond(self, key: tuple[int, int]) -> torch.Tensor:
        """The window's condition tokens (rows, Tc): with guidance, the null condition's batched after them."""
        (i0, j0), (wh, ww) = key, self.window_hw
        c = cond_window(self.cond, self.grid_hw, (i0, i0 + wh), (j0, j0 + ww))
        if self.uncond is None:
            return c
        return guidance_batch(c, cond_window(self.uncond, self.grid_hw, (i0, i0 + wh), (j0, j0 + ww)))

    def advance(self, key: tuple[int, int], p: int) -> torch.Tensor:
        """Logits (rows, V) for the window's image position ``p``, feeding it the tokens written since."""
        k = self.keys.index(key)
        have = self.fed[k] - self.Tc
        if p > have:
            new = self.both(self._image(key)[:, have:p])  # (rows, p - have)
            dec = self.dec.rows(k * self.rows, (k + 1) * self.rows)
            self.logits[k] = dec.step(new, self.fed[k]) if new.shape[1] == 1 else dec.prefill(new, self.fed[k])
            self.fed[k] = self.Tc + p
        return self.logits[k]

    def fresh(self, key: tuple[int, int], p: int) -> torch.Tensor:
        """Logits (rows, V) for image position ``p`` from a fresh forward of the window (no reuse: a reference)."""
        self.keys, self.fed = [], []
        prefix = torch.cat((self._cond(key), self.both(self._image(key)[:, :p])), 1)
        return self.dec.rows(0, self.rows).prefill(prefix)


@torch.inference_mode()
def sample_sliding(model: GPT, cond: torch.Tensor | WindowedCondition, grid_hw: tuple[int, int],
                   window_hw: tuple[int, int],
                   settings: SamplingSettings = SamplingSettings(), generator: torch.Generator | None = None,
                   uncond: torch.Tensor | None = None, n_vocab: int | None = None,
                   init: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                   reuse_cache: bool = True, decoding: DecodeOptions = DecodeOptions(),
                   callback: Progress | None = None, window_batch: int | None = None) -> torch.Tensor:
    """Sample an h x w token grid (B, h, w) with a sliding ``window_hw`` window, in raster order.

    ``cond``: (B, Tc) global condition tokens, a (B, ch, cw) spatial condition grid or a
    :class:`WindowedCondition`; ``uncond``: (B, Tc) or (B, ch, cw) for
    classifier-free guidance (``settings.cfg_scale > 0``). ``init`` (B, h, w): starting tokens, kept where
    ``mask`` (B, h, w) is False (completion); positions masked in no row are skipped. ``reuse_cache=False``
    reruns every window from its start (a reference for tests). ``callback(done, total, tokens)`` after each token
    (see :mod:`~vqforge.sampling.progress`). ``window_batch``: the most windows prefilled together (None: as many
    as :data:`WINDOW_BATCH_BYTES` allows).
    """
    h, w = grid_hw
    wh, ww = min(window_hw[0], h), min(window_hw[1], w)
    grid = token_grid(cond)
    B = grid.shape[0]
    guided = uncond is not None and settings.cfg_scale > 0
    tokens = torch.zeros(B, h, w, dtype=torch.long, device=grid.device) if init is None else init.clone()
    todo = torch.ones(h, w, dtype=torch.bool) if mask is None else mask.reshape(-1, h, w).any(0).cpu()
    (ah, aw), Tc, batch, dec = _setup_windows(model, cond, grid, grid_hw, (wh, ww), todo, 2 * B if guided else B,
                                              decoding, window_batch if reuse_cache else 1)
    windows = _Windows(dec, tokens, cond, uncond if guided else None, grid_hw, (wh, ww), Tc, guided)
    count, total = 0, int(todo.sum())
    for i in range(h):
        i0, li = window_bounds(i, h, wh, ah)
        targets = [(j, *window_bounds(j, w, ww, aw)) for j in range(w) if todo[i, j]]  # (j, j0, lj)
        starts = list(dict.fromkeys(j0 for _, j0, _ in targets))
        for part in (starts[c:c + batch] for c in range(0, len(starts), batch)):
            if reuse_cache:
                windows.fill([(i0, j0) for j0 in part], li)
            for j, j0, lj in (t for t in targets if t[1] in part):
                p = li * ww + lj  # the target's position among the window's image tokens
                logits = windows.advance((i0, j0), p) if reuse_cache else windows.fresh((i0, j0), p)  # (B', V)
                tok = next_token(logits, settings, generator, n_vocab, guided)[:, 0]  # (B,)
                if mask is not None:  # keep the tokens of rows whose mask leaves (i, j) alone
                    tok = torch.where(mask.reshape(-1, h, w)[:, i, j], tok, tokens[:, i, j])
                tokens[:, i, j] = tok
                count += 1
                if callback is not None:
                    callback(count, total, tokens)
    return tokens


def _setup_windows(model: GPT, cond: torch.Tensor | WindowedCondition, grid: torch.Tensor,
                   grid_hw: tuple[int, int], window_hw: tuple[int, int], todo: torch.Tensor, rows: int,
                   decoding: DecodeOptions, most: int | None = None
                   ) -> tuple[tuple[int, int], int, int, DecodeSession]:
    """A sliding run's window alignment, its condition tokens per window, how many windows are prefilled together
    (:func:`window_batch`, at most ``most``) and its decode session (``rows`` sequences per window); a
    :class:`WindowedCondition` encodes here, at once, the crops of every window the run visits.

    The session is never compiled: its feeds are prefills of changing lengths, not one-token steps.
    """
    (h, w), (wh, ww) = grid_hw, window_hw
    ah, aw = check_windows(grid_hw, window_hw, tuple(grid.shape[1:])) if grid.dim() == 3 else (1, 1)
    if isinstance(cond, WindowedCondition):
        ch, cw = grid.shape[1:]
        cond.prepare([(_cond_span(i0, i0 + wh, h, ch), _cond_span(j0, j0 + ww, w, cw))
                      for i0, j0 in window_starts(grid_hw, window_hw, (ah, aw), todo)])
    Tc = cond_tokens_per_window(cond, grid_hw, window_hw)
    if Tc < 1:
        raise ValueError("sampling needs at least one condition (or start) token")
    problem = fit_problem(Tc, wh * ww, model.config.block_size, f" (a {wh}x{ww} window)")
    if problem:
        raise ValueError(problem)
    length = Tc + wh * ww - 1
    batch = window_batch(model.config, rows, length, row_windows(grid_hw, window_hw, aw))
    batch = batch if most is None else max(1, min(batch, most))
    return (ah, aw), Tc, batch, DecodeSession(model, batch * rows, length, replace(decoding, compile=False))
