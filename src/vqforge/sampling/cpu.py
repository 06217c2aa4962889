"""Fast decoding on CPUs with native bf16 (AVX512-BF16 / AMX): the GPT's weights prepacked for oneDNN.

At batch sizes of a few sequences, a decode step is a chain of matrix-vector products whose cost is reading
the weights. :class:`PackedGPT` keeps a bf16 copy of every linear layer in oneDNN's blocked layout (packed
once, so no per-call weight reorder), fuses q/k/v into one product and GELU into the first MLP product, and
keeps the residual stream, layer norms and logits in fp32. Used by :class:`~vqforge.sampling.generate.DecodeSession`
on such CPUs unless ``precision="fp32"``; its logits differ from the fp32 model's by bf16 rounding (~1e-2).
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from ..devices import cpu_bf16_supported
from ..models.gpt import GPT
from ..nn.kv_cache import KVCache


def bf16_supported() -> bool:
    """Whether this CPU runs oneDNN bf16 kernels natively."""
    return cpu_bf16_supported()


_PACKED: "weakref.WeakKeyDictionary[GPT, tuple[tuple, PackedGPT]]" = weakref.WeakKeyDictionary()


def packed(gpt: GPT) -> "PackedGPT":
    """The :class:`PackedGPT` of ``gpt``, reused while its parameters are unchanged (packing costs ~2 ms/layer)."""
    signature = tuple((p.data_ptr(), p._version) for p in gpt.parameters())
    hit = _PACKED.get(gpt)
    if hit is None or hit[0] != signature:
        hit = (signature, PackedGPT(gpt))
        _PACKED[gpt] = hit
    return hit[1]


def _pack(weight: torch.Tensor) -> torch.Tensor:
    """A (out, in) weight as bf16 in oneDNN's blocked layout, for :func:`_linear`."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().to(torch.bfloat16).contiguous(), 1)


def _bias(bias: torch.Tensor | None) -> torch.Tensor | None:
    return None if bias is None else bias.detach().to(torch.bfloat16)


def _linear(x: torch.Tensor, packed: tuple, act: str = "none") -> torch.Tensor:
    """(N, in) bf16 -> (N, out) bf16 through a packed weight; ``act`` "gelu" fuses the exact GELU."""
    w, b = packed
    if act == "gelu":
        return torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none")
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


class PackedGPT:
    """Inference-only view of a :class:`~vqforge.models.gpt.GPT` with packed bf16 linear layers."""

    def __init__(self, gpt: GPT):
        cfg = gpt.config
        self.config = cfg
        self.tok_emb = gpt.tok_emb.weight.detach()  # (V, C) fp32
        self.pos_emb = gpt.pos_emb.detach()  # (1, block, C) fp32
        self.layers = []
        for block in gpt.blocks:
            a = block.attn
            qkv_w = torch.cat((a.query.weight, a.key.weight, a.value.weight))  # (3C, C)
            qkv_b = torch.cat((a.query.bias, a.key.bias, a.value.bias))  # (3C,)
            self.layers.append({
                "ln1": (block.ln1.weight.detach(), block.ln1.bias.detach()),
                "ln2": (block.ln2.weight.detach(), block.ln2.bias.detach()),
                "qkv": (_pack(qkv_w), _bias(qkv_b)),
                "proj": (_pack(a.proj.weight), _bias(a.proj.bias)),
                "fc1": (_pack(block.mlp[0].weight), _bias(block.mlp[0].bias)),
                "fc2": (_pack(block.mlp[2].weight), _bias(block.mlp[2].bias)),
            })
        self.ln_f = (gpt.ln_f.weight.detach(), gpt.ln_f.bias.detach())
        self.head = (_pack(gpt.head.weight), None)
        self.eps = gpt.ln_f.eps

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        c = self.config
        return KVCache(c.n_layer, batch_size, c.n_head, max_len, c.head_dim, device="cpu", dtype=torch.bfloat16)

    @torch.inference_mode()
    def last_logits(self, tokens: torch.Tensor, cache: KVCache, start: int) -> torch.Tensor:
        """Run ``tokens`` (B, T) at positions [start, start+T) through the cache; logits (B, V) fp32 of the last."""
        B, T = tokens.shape
        C, nh, hs = self.config.n_embd, self.config.n_head, self.config.head_dim
        end = start + T
        if end > cache.max_len:
            raise ValueError(f"KV cache overflow: position {end} > max_len {cache.max_len}")
        x = F.embedding(tokens, self.tok_emb) + self.pos_emb[:, start:end]  # (B, T, C) fp32 residual stream
        mask = None
        if T > 1 and start > 0:
            q_pos = torch.arange(start, end)[:, None]
            mask = torch.arange(end)[None, :] <= q_pos  # (T, end)
        for i, layer in enumerate(self.layers):
            h = F.layer_norm(x, (C,), *layer["ln1"], self.eps).to(torch.bfloat16).view(B * T, C)
            q, k, v = _linear(h, layer["qkv"]).view(B, T, 3, nh, hs).permute(2, 0, 3, 1, 4)  # each (B, nh, T, hs)
            cache.k[i, :, :, start:end] = k
            cache.v[i, :, :, start:end] = v
            keys, values = cache.k[i, :, :, :end], cache.v[i, :, :, :end]  # (B, nh, end, hs)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                               is_causal=T > 1 and start == 0)  # (B, nh, T, hs)
            y = y.transpose(1, 2).reshape(B * T, C)
            x.add_(_linear(y, layer["proj"]).view(B, T, C))  # bf16 added into the fp32 stream
            h = F.layer_norm(x, (C,), *layer["ln2"], self.eps).to(torch.bfloat16).view(B * T, C)
            x.add_(_linear(_linear(h, layer["fc1"], "gelu"), layer["fc2"]).view(B, T, C))
        cache.length = end
        h = F.layer_norm(x[:, -1], (C,), *self.ln_f, self.eps).to(torch.bfloat16)  # (B, C)
        return _linear(h, self.head).float()  # (B, V)
