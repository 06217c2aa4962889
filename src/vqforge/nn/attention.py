"""Causal multi-head self-attention with the minGPT parameter names, through SDPA."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .kv_cache import KVCache


def attention_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, n_unmasked: int = 0) -> torch.Tensor:
    """Boolean (Tq, Tk) mask, True where the query at position ``q_pos[i]`` may see the key at ``k_pos[j]``.

    Causal (a key at or before the query), except that the first ``n_unmasked`` positions see each other both
    ways. NOTE: ``n_unmasked`` is the original minGPT's option (0 in every released config), kept for its sake.
    """
    q, k = q_pos[:, None], k_pos[None, :]
    mask = k <= q
    if n_unmasked:
        mask = mask | ((q < n_unmasked) & (k < n_unmasked))
    return mask


class CausalSelfAttention(nn.Module):
    """minGPT's attention (``key``, ``query``, ``value``, ``proj``) on ``scaled_dot_product_attention``.

    ``qkv``: unset in a trained model; an inference copy may set it to one fused projection (C -> 3C, the
    query/key/value weights stacked in that order) in place of the three (see :mod:`vqforge.sampling.cpu`).
    """

    def __init__(self, n_embd: int, n_head: int, attn_pdrop: float = 0.0, resid_pdrop: float = 0.0):
        super().__init__()
        assert n_embd % n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = n_head
        self.key = nn.Linear(n_embd, n_embd)
        self.query = nn.Linear(n_embd, n_embd)
        self.value = nn.Linear(n_embd, n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.qkv: nn.Module | None = None
        self.attn_pdrop = attn_pdrop
        self.resid_drop = nn.Dropout(resid_pdrop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, input_pos: torch.Tensor | None = None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """``x`` (B, T, C) at positions ``input_pos`` (T,). ``mask`` (T, keys): see :func:`attention_mask`;
        None means plain causal attention over ``x`` itself (no cache). With ``cache``, this layer's keys and
        values are written at ``input_pos`` and the queries attend the cache's first ``mask.shape[-1]`` slots under
        ``mask``."""
        B, T, C = x.shape
        hs = C // self.n_head
        if self.qkv is not None:
            q, k, v = self.qkv(x).split(C, dim=-1)
        else:
            q, k, v = self.query(x), self.key(x), self.value(x)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(layer, input_pos, k, v)  # (B, nh, max_len, hs)
            n_keys = mask if isinstance(mask, int) else mask.shape[-1]
            k, v = k[:, :, :n_keys], v[:, :, :n_keys]  # the slots the mask covers
        dropout = self.attn_pdrop if self.training else 0.0
        if isinstance(mask, int):  # every slot visible
            y = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), dropout_p=dropout)
        elif mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:
            y = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.proj(y))
