"""Fast decoding on CPUs with native bf16 (AVX512-BF16 / AMX): the GPT's linear layers prepacked for oneDNN.

At batch sizes of a few sequences, a decode step is a chain of matrix-vector products whose cost is reading
the weights. :func:`packed` makes an inference copy of a :class:`~vqforge.models.gpt.GPT` that shares its
embeddings and layer norms and swaps every linear layer for a :class:`PackedLinear`: a bf16 copy of the weight
in oneDNN's blocked layout (packed once, so no per-call reorder). Query, key and value become one product and
GELU is fused into the first MLP product; nothing else changes, the copy runs ``GPT.forward`` itself. The
residual stream and the layer norms stay fp32; the logits differ from the fp32 model's by bf16 rounding (~1e-2).
"""

from __future__ import annotations

import copy
import itertools
from typing import Callable

import torch
from torch import nn

from ..devices import cpu_bf16_supported
from ..models.gpt import GPT


def bf16_supported() -> bool:
    """Whether this CPU runs oneDNN bf16 kernels natively."""
    return cpu_bf16_supported()


class PackedLinear(nn.Module):
    """``nn.Linear`` for inference with a prepacked bf16 weight: (..., in) -> (..., out) bf16.

    ``act="gelu"`` applies the exact (erf) GELU inside the same oneDNN call.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, act: str = "none"):
        super().__init__()
        w = weight.detach().to(torch.bfloat16).contiguous()  # (out, in)
        self.out_features, self.in_features = w.shape
        self.weight = torch.ops.mkldnn._reorder_linear_weight(w, 1)  # oneDNN layout: a plain attribute, not state
        self.bias = None if bias is None else bias.detach().to(torch.bfloat16)
        self.act, self.algorithm = (act, "none") if act == "gelu" else ("none", "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16).reshape(-1, self.in_features), self.weight,
                                               self.bias, self.act, [], self.algorithm)  # (N, out)
        return y.view(*x.shape[:-1], self.out_features)


def swap_linears(gpt: GPT, make: Callable[..., nn.Module]) -> GPT:
    """An eval-mode copy of ``gpt`` sharing its parameters, each linear layer replaced by ``make(weight, bias,
    act)``: query, key and value as one (3C, C) layer, the first MLP layer with ``act="gelu"`` (it applies GELU),
    no dropout modules. The packed bf16 copy here and the quantised copies of :mod:`.quantized` are built so."""
    shared = {id(t): t for t in itertools.chain(gpt.parameters(), gpt.buffers())}
    twin = copy.deepcopy(gpt, shared).eval()
    for block in twin.blocks:
        a = block.attn
        a.qkv = make(torch.cat((a.query.weight, a.key.weight, a.value.weight)),  # (3C, C)
                     torch.cat((a.query.bias, a.key.bias, a.value.bias)))
        del a.query, a.key, a.value
        a.proj = make(a.proj.weight, a.proj.bias)
        fc1, fc2 = block.mlp[0], block.mlp[2]  # fc1 and GELU become one layer; no dropout modules (inference)
        block.mlp = nn.Sequential(make(fc1.weight, fc1.bias, act="gelu"), make(fc2.weight, fc2.bias))
        a.resid_drop = nn.Identity()
    twin.drop = nn.Identity()
    twin.head = make(twin.head.weight, twin.head.bias)
    return twin


def _packed_copy(gpt: GPT) -> GPT:
    """An eval-mode copy of ``gpt`` sharing its parameters, with :class:`PackedLinear` layers."""
    return swap_linears(gpt, PackedLinear)


def packed(gpt: GPT) -> GPT:
    """The packed copy of ``gpt`` (see the module text), kept in ``gpt.scratch`` while its parameters are
    unchanged (packing costs ~2 ms per layer)."""
    # inference tensors (a model loaded under torch.inference_mode) keep no version counter
    signature = tuple((p.data_ptr(), -1 if p.is_inference() else p._version) for p in gpt.parameters())
    hit = gpt.scratch.get("cpu_packed")
    if hit is None or hit[0] != signature:
        hit = gpt.scratch["cpu_packed"] = (signature, _packed_copy(gpt))
    return hit[1]
