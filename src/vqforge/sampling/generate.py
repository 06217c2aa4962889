"""Autoregressive decoding around an explicit, preallocated :class:`~vqforge.nn.kv_cache.KVCache`.

Three small pieces, LlamaGen-style:

* :func:`prefill` runs the condition tokens (and any known prefix) through the GPT, filling the cache;
* :func:`decode_step` feeds one token at one position and returns the next logits: ``GPT.forward`` with the
  position as a tensor, so no shape depends on it and it is ``torch.compile``'d (CUDA-graph captured) once per
  model and reused for every step and call;
* :func:`sample_tokens` draws a batch of token sequences, seeded by a ``torch.Generator``, optionally with
  classifier-free guidance (conditional and unconditional halves in one batch).

Sequence layout (the original's): ``[c_0 .. c_{Tc-1}, z_0 .. z_{n-1}]``; the logits at position p predict
the token at p + 1, so ``z_0`` comes from the last condition position and the GPT never sees ``z_{n-1}``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import time
import warnings
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

import torch

from ..devices import PRECISIONS, resolve_precision
from ..models.gpt import GPT, GPTConfig
from ..models.transformer import fit_problem
from ..nn.kv_cache import KVCache
from .processors import SamplingSettings, next_token
from .progress import Progress
from .quantized import INT4_GROUP, QUANTISED

#: ``--precision`` of sampling: the devices' vocabulary plus weight-only int8 / int4 (:mod:`.quantized`)
DECODE_PRECISIONS: tuple[str, ...] = PRECISIONS + QUANTISED


@dataclass(frozen=True)
class DecodeOptions:
    """How the GPT runs while sampling (``--precision`` of vqforge.devices, plus weight-only int8 / int4).

    ``precision``: ``fp32`` (the exact path on every device: logits equal the full forward's within 1e-5),
    ``bf16`` (an error where the device lacks it), ``int8`` / ``int4`` (weight-only quantised linear layers,
    :mod:`.quantized`; ``group``: int4's group size) or ``auto``: on CUDA bf16; on a CPU the fastest of the
    precisions in :data:`AUTO_CPU` that this CPU runs, measured once per machine (:func:`cpu_auto_precision`).
    ``compile``: ``None`` (auto: on CUDA), ``True`` (also fp32, with inductor, on any device) or ``False``; the
    packed bf16 and the quantised paths of CPUs are not compiled (see :func:`decode_path`).
    """

    precision: str = "auto"
    compile: bool | None = None
    group: int = INT4_GROUP

    def __post_init__(self):
        if self.precision not in DECODE_PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {', '.join(DECODE_PRECISIONS)}")
        if self.group not in (32, 64, 128, 256):
            raise ValueError(f"int4 group size {self.group}: choose one of 32, 64, 128, 256")


#: Exact fp32, eager: numerically the original's decoding (tests, training previews).
EXACT = DecodeOptions(precision="fp32", compile=False)


@torch.inference_mode()
def prefill(model: GPT, tokens: torch.Tensor, cache: KVCache, start: int = 0) -> torch.Tensor:
    """Run ``tokens`` (B, T) at positions [start, start+T), writing the cache; return the last logits (B, V)."""
    if start + tokens.shape[1] > cache.max_len:
        raise ValueError(f"positions up to {start + tokens.shape[1]} exceed the cache (max_len {cache.max_len})")
    pos = torch.arange(start, start + tokens.shape[1], device=tokens.device)  # (T,)
    return model(tokens, pos, cache)[:, -1].float()


def decode_step(model: GPT, token: torch.Tensor, input_pos: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Feed ``token`` (B, 1) at position ``input_pos`` (a 1-element long tensor); return logits (B, V).

    ``GPT.forward`` itself: no shape depends on the position, so one compiled (or CUDA-graph captured) step
    serves every position and every call with the same cache.
    """
    return model(token, input_pos, cache)[:, -1].float()


#: Decode paths, by name (:attr:`DecodeSession.mode`).
PATHS = ("cuda-compiled-bf16", "cuda-bf16", "cuda-compiled-int8", "cuda-int8", "cuda-compiled-int4", "cuda-int4",
         "cpu-packed-bf16", "cpu-int8", "cpu-int4", "compiled-fp32", "eager")

#: What ``--precision auto`` chooses among on a CPU, most exact first (bf16 only where the CPU runs it natively).
#: int4 (round to nearest) is left out: its quality loss is beyond bf16's noise (docs/benchmarks.md, the quality
#: table of bench/quality_precision.py).
AUTO_CPU = ("fp32", "bf16", "int8")
#: A less exact candidate must be this much faster than the best more exact one to be chosen.
AUTO_MARGIN = 1.1


def decode_path(device: torch.device | str, decoding: DecodeOptions = DecodeOptions(), measure: bool = True) -> str:
    """The path a :class:`DecodeSession` takes on ``device``.

    bf16 on CUDA: compiled with CUDA graphs unless ``compile=False``; bf16 on a CPU: the packed oneDNN copy of
    :mod:`.cpu` (not compiled); int8 / int4: ATen's weight-only kernels on a CPU (not compiled), the weights
    dequantised inside the step on CUDA (compiled unless ``compile=False``); fp32: eager unless ``compile=True``
    (inductor; CUDA graphs on CUDA). ``auto`` on a CPU: :func:`cpu_auto_precision` (measured once per machine);
    with ``measure=False`` (a check before any work) bf16 where native, else fp32.
    """
    device = torch.device(device)
    precision = decoding.precision
    if precision == "auto" and device.type == "cpu" and measure:
        precision = cpu_auto_precision()
    if precision in QUANTISED:
        if device.type == "cpu":
            return f"cpu-{precision}"
        return f"cuda-{precision}" if decoding.compile is False else f"cuda-compiled-{precision}"
    bf16 = resolve_precision(precision, device) == torch.bfloat16
    if bf16 and device.type == "cuda":
        return "cuda-bf16" if decoding.compile is False else "cuda-compiled-bf16"
    if bf16:
        return "cpu-packed-bf16"
    return "compiled-fp32" if decoding.compile else "eager"


def _step_seconds(model: GPT, decoding: DecodeOptions, batch_size: int, steps: int = 16) -> float:
    """The fastest of ``steps`` decode steps of ``model`` at ``batch_size`` along ``decoding``'s path, in seconds
    (after a 32-token prefill and two warm-up steps; the minimum, as other work on the machine only adds)."""
    n = 32 + steps + 2
    dec = DecodeSession(model, batch_size, n, decoding)
    tok = torch.zeros(batch_size, 1, dtype=torch.long, device=dec.device)
    dec.prefill(tok.expand(batch_size, 32))
    times = []
    for p in range(32, n):
        t = time.perf_counter()
        dec.step(tok, p)
        times.append(time.perf_counter() - t)
    return min(times[2:])


def _cpu_signature() -> str:
    """This CPU's model name, its matrix-relevant flags and the torch version: what the auto choice depends on."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not name:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    have = [f for f in ("amx_tile", "amx_bf16", "avx512_bf16", "avx512_vnni", "avx512f", "avx2") if f in flags]
    return f"{name or platform.processor() or platform.machine()} [{' '.join(have)}] torch {torch.__version__}"


def _choice_file() -> Path:
    """Where measured CPU choices are kept: ``$VQFORGE_HOME`` (else the user cache's vqforge)/cpu_decode.json."""
    home = os.environ.get("VQFORGE_HOME")
    base = Path(home).expanduser() if home else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
        "vqforge"
    return base / "cpu_decode.json"


@functools.lru_cache(maxsize=None)
def cpu_auto_precision() -> str:
    """What ``--precision auto`` means on this CPU: the fastest of :data:`AUTO_CPU` (those the CPU runs), a less
    exact one only when :data:`AUTO_MARGIN` faster, timed once per machine on the CPU benchmark GPT (8 x 512,
    26M parameters, random weights) at batch 1 and 4, and kept in :func:`_choice_file` under the CPU's
    signature, so every later run on the machine takes the same path (the same seed, the same samples).
    """
    from ..io import write_json

    key = f"{_cpu_signature()} | {' '.join(AUTO_CPU)}"
    path = _choice_file()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), dict) and known[key].get("precision") in AUTO_CPU:
        return known[key]["precision"]
    with torch.inference_mode():
        torch.manual_seed(0)
        gpt = GPT(GPTConfig(vocab_size=1024, block_size=64, n_layer=8, n_head=8, n_embd=512)).eval()
        seconds = {}
        for precision in AUTO_CPU:
            if precision == "bf16" and resolve_precision("auto", torch.device("cpu")) != torch.bfloat16:
                continue
            opts = DecodeOptions(precision=precision, compile=False)
            seconds[precision] = sum(_step_seconds(gpt, opts, b) for b in (1, 4))
    best = "fp32"
    for precision, s in seconds.items():
        if s * AUTO_MARGIN < seconds[best]:
            best = precision
    known[key] = {"precision": best, "step_seconds_b1_plus_b4": {k: round(v, 6) for k, v in seconds.items()}}
    try:
        write_json(path, known)
    except OSError:
        pass  # a read-only home: measured again next time
    return best


def _compiled_step(model: GPT, device: torch.device) -> Callable:
    """The compiled decode step of ``model`` (made once, kept in ``model.scratch``), or :func:`decode_step` once
    a compile has failed for this model."""
    key = f"decode_step:{device.type}"
    step = model.scratch.get(key)
    if step is None:
        mode = "reduce-overhead" if device.type == "cuda" else None  # CUDA graphs where there are any
        step = model.scratch[key] = torch.compile(decode_step, mode=mode, fullgraph=True)
    return step


def _static_cache(model: GPT, batch_size: int, max_len: int, dtype: torch.dtype) -> KVCache:
    """A cache for ``model``'s compiled CUDA step, kept in ``model.scratch`` while the shape stays the same.

    The buffers keep their addresses from call to call, so the captured CUDA graphs (which write into them in
    place) stay valid and nothing recompiles. Stale entries from an earlier call are never attended: the mask
    hides every slot after the query's position, and a prefill overwrites the slots it attends.
    """
    cache = model.scratch.get("static_cache")
    if cache is None or (cache.batch_size, cache.max_len, cache.k.dtype) != (batch_size, max_len, dtype):
        cache = model.scratch["static_cache"] = model.new_cache(batch_size, max_len, dtype=dtype).static()
    cache.reset()
    return cache


class DecodeSession:
    """A GPT bound to a cache and its decode step; the one object a sampling loop drives.

    ``decoding`` (:class:`DecodeOptions`) picks the path for the device (:func:`decode_path`):

    * ``cuda-compiled-bf16``: bf16 autocast, a static bf16 cache and a ``torch.compile``'d step
      (``mode="reduce-overhead"``: CUDA graphs), compiled once per model; ``cuda-bf16`` the same, eagerly;
    * ``cpu-packed-bf16`` (CPUs with native bf16, oneDNN): the model's packed copy (:func:`.cpu.packed`);
    * ``cpu-int8`` / ``cpu-int4``: the model's quantised copy (:func:`.quantized.quantized`), an fp32 cache;
      ``cuda-[compiled-]int8`` / ``-int4``: the same copy, dequantising in the step, as the bf16 CUDA paths;
    * ``eager`` / ``compiled-fp32``: the fp32 model (logits equal the full forward's within 1e-5).

    Every path runs ``GPT.forward``; a failed compile warns and continues eagerly, for that model only.
    """

    def __init__(self, model: GPT, batch_size: int, max_len: int, decoding: DecodeOptions = DecodeOptions()):
        from .cpu import packed
        from .quantized import quantized

        self.model = model
        self.device = model.pos_emb.device
        self.mode = decode_path(self.device, decoding)
        self.compiled = "compiled" in self.mode
        bf16 = self.mode != "eager" and self.mode != "compiled-fp32"
        # the CPU's quantised copies keep activations and cache in fp32 (only the kernels' inputs are bf16)
        dtype = torch.bfloat16 if bf16 and not self.mode.startswith("cpu-int") else torch.float32
        self.net = model  # what runs GPT.forward
        if self.mode == "cpu-packed-bf16":
            self.net = packed(model)
        elif self.mode.endswith(QUANTISED):
            self.net = quantized(model, self.mode.rsplit("-", 1)[1], decoding.group)
        if self.compiled and self.device.type == "cuda":
            self.cache = _static_cache(model, batch_size, max_len, dtype)
        else:
            self.cache = model.new_cache(batch_size, max_len, dtype=dtype)
        self._autocast = bf16 and self.device.type == "cuda"
        self._pos = torch.zeros(1, dtype=torch.long, device=self.device)

    def rows(self, start: int, stop: int) -> "DecodeSession":
        """The same session over batch rows [start, stop) of its cache (:meth:`KVCache.rows`): a group of sequences
        fed on its own while the others wait (the sliding window's windows, prefilled together, then advanced one
        window at a time)."""
        view = object.__new__(DecodeSession)
        view.__dict__.update(self.__dict__)
        view.cache = self.cache.rows(start, stop)
        return view

    def _context(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self._autocast else contextlib.nullcontext()

    def prefill(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Run ``tokens`` (B, T) at positions [start, start+T); return the logits (B, V) of the last one."""
        with self._context():
            return prefill(self.net, tokens, self.cache, start)

    @torch.inference_mode()
    def step(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        """Feed one token (B, 1) at position ``pos``; return the logits (B, V) for position pos + 1."""
        if pos >= self.cache.max_len:
            raise ValueError(f"position {pos} outside the cache (max_len {self.cache.max_len})")
        self._pos.fill_(pos)
        with self._context():
            if not self.compiled:
                return decode_step(self.net, token, self._pos, self.cache)
            step = _compiled_step(self.model, self.device)
            try:
                return step(self.net, token, self._pos, self.cache)
            except Exception as e:  # a compiler problem must not cost the user their samples
                if step is decode_step:
                    raise
                warnings.warn(f"compiled decode step failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              f"continuing eagerly for this model")
                self.model.scratch[f"decode_step:{self.device.type}"] = decode_step
                return decode_step(self.net, token, self._pos, self.cache)


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
    problem = fit_problem(Tc, steps, model.config.block_size)
    if problem:
        raise ValueError(problem)
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
