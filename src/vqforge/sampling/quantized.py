"""Weight-only int8 and int4 decoding: the GPT's linear layers with quantised weights (gpt-fast's recipes).

A batch-1 decode step is a chain of matrix-vector products whose cost is reading the weights (docs/benchmarks.md),
so fewer bytes per weight is the lever. :func:`quantized` makes an inference copy of a
:class:`~vqforge.models.gpt.GPT`, like the packed bf16 copy of :mod:`.cpu` (the same layer swap: query, key and
value fused into one product, GELU after the first MLP product; embeddings, layer norms and the residual stream
shared and fp32; the copy runs ``GPT.forward`` itself), with every linear layer, the head included, quantised:

========= =========================================================================================================
``int8``  per output channel, symmetric: ``w ~ q * s``, ``q`` in [-127, 127], ``s = max|w_row| / 127``
          (1 byte per weight; the rounding error of a weight is at most ``s / 2``)
``int4``  per group of ``group`` input channels (a parameter, default 32), asymmetric, round to nearest:
          ``w ~ (q - 8) * s + z``, ``q`` in [0, 15], ``s = (max - min) / 15``, ``z = min + 8 s``
          (half a byte per weight plus 4 bytes of bf16 scale and zero per group; error at most ``s / 2``)
========= =========================================================================================================

How a quantised product runs depends on the device: on a CPU through ATen's weight-only kernels
(``torch.ops.aten._weight_int8pack_mm``, ``torch.ops.aten._weight_int4pack_mm_for_cpu`` with the weight packed
once by ``_convert_weight_to_int4pack_for_cpu``), with bf16 activations (the kernels have no fast fp32-activation
path: bench/gemv_bandwidth.py measured them 10-20x slower) and fp32 outputs (the residual stream, attention and the
cache stay fp32: a CPU without native bf16 runs bf16 attention slowly); elsewhere (CUDA) by dequantising the weight inside the
step (``(q - 8) * s + z``, then ``F.linear``), which ``torch.compile`` fuses into the compiled decode step. The
dequantising layer runs on a CPU too, which is how the tests check it against the kernels.

The CPU kernels are matrix-vector kernels: their time grows with every row of input, and beyond a few rows (a
prefill, a large guided batch) the plain fp32 product is faster (bench/gemv_bandwidth.py). A quantised layer on a
CPU therefore multiplies inputs of more than :data:`DENSE_ROWS` rows by the fp32 weight it was made from, which the
copy shares with the model (only the fused query/key/value weight is a new fp32 tensor): the decode steps read the
quantised bytes, the prefills run at fp32's compute rate and precision. :func:`set_dense_rows` changes the threshold (``None``: always the quantised
product, as the quality measurements and tests do).

A layer the int4 kernel cannot take (input channels not a multiple of the group, output channels not a multiple
of 16: small test models) is quantised to int8 instead; :func:`layer_formats` says what each layer got.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.gpt import GPT
from .cpu import swap_linears

#: weight-only precisions (the ``--precision`` values beyond auto / bf16 / fp32)
QUANTISED = ("int8", "int4")
#: default group size of int4 (input channels sharing a scale and zero point)
INT4_GROUP = 32
#: on a CPU, inputs of more rows than this go through the shared fp32 weight (see the module text)
DENSE_ROWS = 16


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8: ``w`` (N, K) -> (q int8 (N, K), scales fp32 (N,)); w ~ q * s."""
    w = w.detach().float()
    scale = w.abs().amax(1).clamp(min=1e-12) / 127  # (N,)
    return (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8), scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(N, K) fp32 from :func:`quantize_int8`'s pair."""
    return q.float() * scale.float()[:, None]


def quantize_int4(w: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group-wise asymmetric int4, round to nearest: ``w`` (N, K) -> (q int32 in [0, 15] (N, K), scales (N, K/g),
    zeros (N, K/g)), fp32; w ~ (q - 8) * s + z per group of ``group`` input channels."""
    w = w.detach().float()
    N, K = w.shape
    if K % group:
        raise ValueError(f"int4: {K} input channels are not a multiple of the group size {group}")
    wg = w.reshape(N, K // group, group)
    lo, hi = wg.amin(-1), wg.amax(-1)  # (N, K/g)
    scale = ((hi - lo) / 15).clamp(min=1e-12)
    q = ((wg - lo[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32)
    return q.reshape(N, K), scale, lo + 8 * scale


def dequantize_int4(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """(N, K) fp32 from :func:`quantize_int4`'s triple (q (N, K) in [0, 15], scales and zeros (N, K/g))."""
    N, K = q.shape
    G = scale.shape[1]
    w = (q.reshape(N, G, K // G).float() - 8) * scale.float()[..., None] + zero.float()[..., None]
    return w.reshape(N, K)


def int4_fits(n_out: int, n_in: int, group: int) -> bool:
    """Whether the CPU int4 kernel takes an (n_out, n_in) weight at this group size."""
    return n_in % group == 0 and n_out % 16 == 0 and group in (32, 64, 128, 256)


def _gelu(y: torch.Tensor, act: str) -> torch.Tensor:
    return F.gelu(y.float()).to(y.dtype) if act == "gelu" else y


class _Quantised(nn.Module):
    """What both quantised layers share: the fp32 weight and bias they were made from (shared with the model, not
    state) for inputs of more than ``dense_rows`` rows on a CPU."""

    dense_rows: int | None = DENSE_ROWS

    def _finish(self, weight: torch.Tensor, bias: torch.Tensor | None, act: str) -> None:
        """The bias (bf16 beside a CPU kernel), the activation, and the fp32 weight kept for tall inputs."""
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16 if self.kernel
                                                                                  else torch.float32))
        self.act = act
        self._dense = (weight.detach(), None if bias is None else bias.detach()) if self.kernel else None

    def _product(self, flat: torch.Tensor) -> torch.Tensor:
        """(N, in) -> (N, out) through the quantised weight, without the bias."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = self._dense_product(flat)
        if y is None:
            y = self._product(flat)
            if self.bias is not None:
                y = y + self.bias.to(y.dtype)
            y = _gelu(y, self.act)
        return y.view(*x.shape[:-1], self.out_features)

    def _dense_product(self, flat: torch.Tensor) -> torch.Tensor | None:
        """fp32 product (N, out) for a tall input; None when the quantised kernel should run."""
        if self._dense is None or self.dense_rows is None or flat.shape[0] <= self.dense_rows:
            return None
        w, b = self._dense
        return _gelu(F.linear(flat.float(), w, b), self.act)


class Int8Linear(_Quantised):
    """Weight-only int8 linear layer for inference: (..., in) -> (..., out) fp32 on a CPU (ATen's int8 kernel on
    the input in bf16) or the input's dtype (elsewhere: dequantised in the step). ``act="gelu"`` applies the exact GELU after it."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, act: str = "none", kernel: bool | None = None):
        super().__init__()
        q, scale = quantize_int8(weight)
        self.out_features, self.in_features = q.shape
        self.kernel = weight.device.type == "cpu" if kernel is None else kernel
        self.register_buffer("q", q)  # (out, in) int8
        self.register_buffer("scale", scale.to(torch.bfloat16) if self.kernel else scale)  # (out,)
        self._finish(weight, bias, act)

    def _product(self, flat: torch.Tensor) -> torch.Tensor:
        if self.kernel:
            return torch.ops.aten._weight_int8pack_mm(flat.to(torch.bfloat16), self.q, self.scale).float()  # (N, out)
        return F.linear(flat, (self.q.to(flat.dtype) * self.scale.to(flat.dtype)[:, None]))  # dequantised in the step


class Int4Linear(_Quantised):
    """Weight-only int4 linear layer (group-wise scales and zeros) for inference: (..., in) -> (..., out) fp32 on a
    CPU (ATen's int4 kernel on the input in bf16, weight packed once), the input's dtype elsewhere (two codes per byte, dequantised in
    the step). ``kernel=False`` forces the dequantising form on a CPU too (tests)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, act: str = "none", group: int = INT4_GROUP,
                 kernel: bool | None = None):
        super().__init__()
        q, scale, zero = quantize_int4(weight, group)
        self.out_features, self.in_features = q.shape
        self.group = group
        self.kernel = weight.device.type == "cpu" if kernel is None else kernel
        if self.kernel:
            self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
            sz = torch.stack((scale, zero), -1).transpose(0, 1).contiguous()  # (in/g, out, 2)
            self.register_buffer("scales_zeros", sz.to(torch.bfloat16))
        else:
            self.register_buffer("packed", (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8))  # (out, in/2)
            self.register_buffer("scales_zeros", torch.stack((scale, zero), -1))  # (out, in/g, 2) fp32
        self._finish(weight, bias, act)

    def _product(self, flat: torch.Tensor) -> torch.Tensor:
        if self.kernel:
            return torch.ops.aten._weight_int4pack_mm_for_cpu(flat.to(torch.bfloat16), self.packed, self.group,
                                                              self.scales_zeros).float()  # (N, out)
        p = self.packed  # dequantised in the step
        q = torch.stack((p >> 4, p & 15), -1).reshape(self.out_features, self.in_features).to(flat.dtype)
        s, z = self.scales_zeros[..., 0].to(flat.dtype), self.scales_zeros[..., 1].to(flat.dtype)
        w = (q.view(self.out_features, -1, self.group) - 8) * s[..., None] + z[..., None]
        return F.linear(flat, w.view(self.out_features, self.in_features))


def quantized_layer(precision: str, group: int = INT4_GROUP, kernel: bool | None = None):
    """A ``make(weight, bias, act) -> nn.Module`` for :func:`.cpu.swap_linears` at ``precision``."""
    if precision not in QUANTISED:
        raise ValueError(f"precision {precision!r}: weight-only quantisation is one of {', '.join(QUANTISED)}")

    def make(weight: torch.Tensor, bias: torch.Tensor | None, act: str = "none") -> nn.Module:
        if precision == "int4" and int4_fits(*weight.shape, group):
            return Int4Linear(weight, bias, act, group, kernel)
        return Int8Linear(weight, bias, act, kernel)
    return make


def quantized(gpt: GPT, precision: str, group: int = INT4_GROUP) -> GPT:
    """The ``precision`` (int8 / int4) copy of ``gpt`` (see the module text), made once and kept in
    ``gpt.scratch`` while its parameters are unchanged."""
    signature = (tuple((p.data_ptr(), -1 if p.is_inference() else p._version) for p in gpt.parameters()), group)
    key = f"quantized:{precision}:{group}"
    hit = gpt.scratch.get(key)
    if hit is None or hit[0] != signature:
        with torch.no_grad():
            hit = gpt.scratch[key] = (signature, swap_linears(gpt, quantized_layer(precision, group)))
    return hit[1]


def dequantised(gpt: GPT, precision: str, group: int = INT4_GROUP) -> GPT:
    """A copy of ``gpt`` computing in fp32 with the weights of its ``precision`` copy, dequantised (the same
    rounded weights, none of the kernels' bf16 input rounding): the reference a quantised decode path is
    checked against at its own precision."""
    with torch.no_grad():
        return swap_linears(gpt, quantized_layer(precision, group, kernel=False))


def set_dense_rows(net: nn.Module, rows: int | None) -> None:
    """Set the quantised layers of ``net`` to multiply inputs of more than ``rows`` rows by the fp32 weight
    (``None``: never; the quality measurements and the tests of the quantised products)."""
    for m in net.modules():
        if isinstance(m, _Quantised):
            m.dense_rows = rows


def layer_formats(net: nn.Module) -> dict[str, str]:
    """Layer name -> ``int8`` / ``int4 gN`` for each quantised layer of a :func:`quantized` copy."""
    out = {}
    for name, m in net.named_modules():
        if isinstance(m, Int4Linear):
            out[name] = f"int4 g{m.group}"
        elif isinstance(m, Int8Linear):
            out[name] = "int8"
    return out


def weight_bytes(net: nn.Module) -> int:
    """Bytes of the weights a decode step reads through ``net``'s linear layers (quantised codes, scales, zeros,
    biases; packed bf16 or fp32 weights for the other paths); embeddings and layer norms not counted."""
    total = 0
    for m in net.modules():
        if isinstance(m, (Int8Linear, Int4Linear)) or type(m).__name__ == "PackedLinear":
            total += sum(t.numel() * t.element_size() for t in (getattr(m, n, None) for n in
                         ("q", "scale", "packed", "scales_zeros", "bias")) if isinstance(t, torch.Tensor))
            if type(m).__name__ == "PackedLinear":
                total += m.in_features * m.out_features * 2
        elif isinstance(m, nn.Linear):
            total += sum(p.numel() * p.element_size() for p in m.parameters())
    return total
