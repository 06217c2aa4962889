"""Autoregressive decoding around an explicit, preallocated :class:`~vqforge.nn.kv_cache.KVCache`.

Three small pieces, LlamaGen-style:

* :func:`prefill` runs the condition tokens (and any known prefix) through the GPT, filling the cache;
* :func:`decode_step` feeds one token at one position and returns the next logits. It keeps every shape
  fixed (the position is a tensor, attention covers the whole preallocated cache under a mask), so it can be
  ``torch.compile``'d or CUDA-graph captured once and reused for every step;
* :func:`sample_tokens` draws a batch of token sequences, seeded by a ``torch.Generator``, optionally with
  classifier-free guidance (conditional and unconditional halves in one batch).

Sequence layout (the original's): ``[c_0 .. c_{Tc-1}, z_0 .. z_{n-1}]``; the logits at position p predict
the token at p + 1, so ``z_0`` comes from the last condition position and the GPT never sees ``z_{n-1}``.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..devices import PRECISIONS, resolve_precision
from ..models.gpt import GPT
from ..nn.kv_cache import KVCache
from .processors import SamplingSettings, next_token
from .progress import Progress


@dataclass(frozen=True)
class DecodeOptions:
    """How the GPT runs while sampling (the same vocabulary as ``--precision`` everywhere, see vqforge.devices).

    ``precision``: ``auto`` (bf16 where the device runs it natively: CUDA, CPUs with AVX512-BF16 / AMX; fp32
    elsewhere), ``bf16`` (an error where the device lacks it) or ``fp32`` (the exact path on every device: logits
    equal the full forward's within 1e-5). ``compile``: ``None`` (auto: on CUDA only), ``True`` or ``False``.
    """

    precision: str = "auto"
    compile: bool | None = None

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")


#: Exact fp32, eager: numerically the original's decoding (tests, training previews).
EXACT = DecodeOptions(precision="fp32", compile=False)


@torch.inference_mode()
def prefill(model: GPT, tokens: torch.Tensor, cache: KVCache, start: int = 0) -> torch.Tensor:
    """Run ``tokens`` (B, T) at positions [start, start+T), writing the cache; return the last logits (B, V)."""
    logits = model(tokens, cache=cache, start=start)  # (B, T, V)
    return logits[:, -1].float()


def decode_step(model: GPT, token: torch.Tensor, pos: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Feed ``token`` (B, 1) at position ``pos`` (a 1-element long tensor); return logits (B, V).

    Keys/values are written into the cache at ``pos``; attention covers cache slots [0, pos] through a
    mask over the full preallocated length, so no shape depends on ``pos`` (compile / graph-capture safe).
    The caller advances ``cache.length``.
    """
    B = token.shape[0]
    cfg = model.config
    nh, hs, C = cfg.n_head, cfg.head_dim, cfg.n_embd
    slots = torch.arange(cache.max_len, device=token.device)
    mask = (slots <= pos).view(1, 1, 1, cache.max_len)  # (1, 1, 1, M): True where attention is allowed
    x = model.tok_emb(token) + model.pos_emb.index_select(1, pos)  # (B, 1, C)
    for i, block in enumerate(model.blocks):
        attn = block.attn
        h = block.ln1(x)
        q = attn.query(h).view(B, 1, nh, hs).transpose(1, 2)  # (B, nh, 1, hs)
        k = attn.key(h).view(B, 1, nh, hs).transpose(1, 2)  # (B, nh, 1, hs)
        v = attn.value(h).view(B, 1, nh, hs).transpose(1, 2)  # (B, nh, 1, hs)
        keys, values = cache.k[i], cache.v[i]  # (B, nh, M, hs)
        keys.index_copy_(2, pos, k.to(keys.dtype))
        values.index_copy_(2, pos, v.to(values.dtype))
        y = F.scaled_dot_product_attention(q, keys.to(q.dtype), values.to(q.dtype), attn_mask=mask)  # (B, nh, 1, hs)
        x = x + attn.proj(y.transpose(1, 2).reshape(B, 1, C))
        x = x + block.mlp(block.ln2(x))
    return model.head(model.ln_f(x))[:, -1].float()  # (B, V)


_COMPILED: Callable | None = None
_CUDA_CACHES: "weakref.WeakKeyDictionary[GPT, KVCache]" = weakref.WeakKeyDictionary()


def _compiled_decode_step() -> Callable:
    """One compiled (CUDA-graph) decode step for the whole process, so that graphs are reused across calls."""
    global _COMPILED
    if _COMPILED is None:  # decode_step itself once a compile has failed (see DecodeSession.step)
        _COMPILED = torch.compile(decode_step, mode="reduce-overhead", fullgraph=True)
    return _COMPILED


def _cuda_cache(model: GPT, batch_size: int, max_len: int) -> KVCache:
    """A bf16 cache for ``model`` on CUDA, reused while the shape stays the same.

    The buffers keep their addresses from call to call, so the captured CUDA graphs (which write into them in
    place) stay valid and nothing recompiles. Stale entries from an earlier call are never attended: the
    step masks every slot after its position, and a prefill overwrites the slots it attends.
    """
    cache = _CUDA_CACHES.get(model)
    if cache is None or cache.k.shape[1] != batch_size or cache.max_len != max_len:
        cache = model.new_cache(batch_size, max_len, device=model.pos_emb.device, dtype=torch.bfloat16)
        torch._dynamo.mark_static_address(cache.k)
        torch._dynamo.mark_static_address(cache.v)
        _CUDA_CACHES[model] = cache
    cache.reset()
    return cache


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class DecodeSession:
    """A GPT bound to a cache and its decode step; the one object a sampling loop drives.

    ``decoding`` (:class:`DecodeOptions`) picks the path for the device:

    * CUDA, bf16: bf16 autocast and a ``torch.compile``'d decode step (``mode="reduce-overhead"``: CUDA graphs);
    * CPUs with native bf16 (oneDNN, e.g. AVX512-BF16/AMX): :class:`~vqforge.sampling.cpu.PackedGPT`,
      prepacked bf16 weights with fused q/k/v and GELU;
    * fp32: the fp32 model, eagerly (the full forward's logits within 1e-4).
    """

    def __init__(self, model: GPT, batch_size: int, max_len: int, decoding: DecodeOptions = DecodeOptions()):
        from .cpu import packed

        self.model = model
        self.device = model.pos_emb.device
        bf16 = resolve_precision(decoding.precision, self.device) == torch.bfloat16
        self.compiled = bf16 and self.device.type == "cuda" and decoding.compile is not False
        self.packed = packed(model) if bf16 and self.device.type == "cpu" else None
        if self.packed is not None:
            self.cache = self.packed.new_cache(batch_size, max_len)
        elif self.compiled:
            self.cache = _cuda_cache(model, batch_size, max_len)
        else:
            self.cache = model.new_cache(batch_size, max_len, device=self.device)
        self._pos = torch.zeros(1, dtype=torch.long, device=self.device)
        self._step: Callable = _compiled_decode_step() if self.compiled else decode_step

    @property
    def mode(self) -> str:
        """Which path runs: "cuda-compiled-bf16", "cpu-packed-bf16" or "eager"."""
        return "cuda-compiled-bf16" if self.compiled else "cpu-packed-bf16" if self.packed is not None else "eager"

    def prefill(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Run ``tokens`` (B, T) at positions [start, start+T); return the logits (B, V) of the last one."""
        if self.packed is not None:
            return self.packed.last_logits(tokens, self.cache, start)
        with _autocast(self.device, self.compiled):
            return prefill(self.model, tokens, self.cache, start)

    @torch.inference_mode()
    def step(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        """Feed one token (B, 1) at position ``pos``; return the logits (B, V) for position pos + 1."""
        if pos >= self.cache.max_len:
            raise ValueError(f"position {pos} outside the cache (max_len {self.cache.max_len})")
        if self.packed is not None:
            return self.packed.last_logits(token, self.cache, pos)
        if not self.compiled:  # eager: attend over the filled slots only (shapes may change, nothing is traced)
            return prefill(self.model, token, self.cache, pos)
        self._pos.fill_(pos)
        with _autocast(self.device, self.compiled):
            try:
                logits = self._step(self.model, token, self._pos, self.cache)
            except Exception as e:  # a compiler problem must not cost the user their samples
                if self._step is decode_step:
                    raise
                warnings.warn(f"compiled decode step failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              f"continuing eagerly")
                global _COMPILED
                _COMPILED = self._step = decode_step  # and for later decoders too
                logits = self._step(self.model, token, self._pos, self.cache)
        self.cache.length = pos + 1
        return logits


def decode_path(device: torch.device | str, decoding: DecodeOptions = DecodeOptions()) -> str:
    """The path a :class:`DecodeSession` takes on ``device`` (see :attr:`DecodeSession.mode`)."""
    device = torch.device(device)
    bf16 = resolve_precision(decoding.precision, device) == torch.bfloat16
    if bf16 and device.type == "cuda" and decoding.compile is not False:
        return "cuda-compiled-bf16"
    if bf16 and device.type == "cpu":
        return "cpu-packed-bf16"
    return "eager"


def guidance_batch(cond: torch.Tensor, uncond: torch.Tensor | None) -> torch.Tensor:
    """Stack conditional and unconditional condition tokens (B, Tc) into one (2B, Tc) batch."""
    if uncond is None:
        return cond
    if uncond.shape != cond.shape:
        raise ValueError(f"unconditional tokens {tuple(uncond.shape)} differ from conditional {tuple(cond.shape)}")
    return torch.cat((cond, uncond), dim=0)


@torch.inference_mode()
def sample_tokens(model: GPT, cond: torch.Tensor, steps: int, settings: SamplingSettings = SamplingSettings(),
                  generator: torch.Generator | None = None, uncond: torch.Tensor | None = None,
                  n_vocab: int | None = None, decoding: DecodeOptions = DecodeOptions(),
                  callback: Progress | None = None) -> torch.Tensor:
    """Sample ``steps`` tokens after the condition tokens ``cond`` (B, Tc); returns (B, steps).

    ``uncond`` (B, Tc): condition tokens of the unconditional branch; with ``settings.cfg_scale > 0`` both
    branches run as one batch of 2B and their logits are combined. ``n_vocab`` restricts sampling to ids
    below it. ``decoding``: precision and compilation (see :class:`DecodeOptions`).
    ``callback(done, steps, out)`` is called after each token (see :mod:`~vqforge.sampling.progress`).
    """
    guided = uncond is not None and settings.cfg_scale > 0
    seq = guidance_batch(cond, uncond if guided else None)  # (B or 2B, Tc)
    B, Tc = cond.shape
    if Tc + steps - 1 > model.config.block_size:
        raise ValueError(f"{Tc} condition + {steps} image tokens exceed the GPT's block_size {model.config.block_size}")
    dec = DecodeSession(model, seq.shape[0], Tc + steps - 1, decoding)
    out = torch.empty(B, steps, dtype=torch.long, device=cond.device)
    logits = dec.prefill(seq)  # (B or 2B, V)
    for n in range(steps):
        tok = next_token(logits, settings, generator, n_vocab, guided)  # (B, 1)
        out[:, n:n + 1] = tok
        if callback is not None:
            callback(n + 1, steps, out)
        if n + 1 < steps:
            logits = dec.step(torch.cat((tok, tok)) if guided else tok, Tc + n)
    return out
