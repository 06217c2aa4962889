"""Causal multi-head self-attention with the minGPT parameter names, through SDPA."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .kv_cache import KVCache


class CausalSelfAttention(nn.Module):
    """minGPT's attention (``key``, ``query``, ``value``, ``proj``) on ``scaled_dot_product_attention``.

    ``n_unmasked``: the first positions attend to each other bidirectionally (the original's option, 0 by
    default).
    """

    def __init__(self, n_embd: int, n_head: int, attn_pdrop: float = 0.0, resid_pdrop: float = 0.0, n_unmasked: int = 0):
        super().__init__()
        assert n_embd % n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = n_head
        self.key = nn.Linear(n_embd, n_embd)
        self.query = nn.Linear(n_embd, n_embd)
        self.value = nn.Linear(n_embd, n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.attn_pdrop = attn_pdrop
        self.resid_drop = nn.Dropout(resid_pdrop)
        self.n_unmasked = n_unmasked

    def _mask(self, q_start: int, q_len: int, k_len: int, device) -> torch.Tensor | None:
        """Boolean (q_len, k_len) mask: True where attention is allowed."""
        q_pos = torch.arange(q_start, q_start + q_len, device=device)[:, None]
        k_pos = torch.arange(k_len, device=device)[None, :]
        mask = k_pos <= q_pos
        if self.n_unmasked:
            mask = mask | ((q_pos < self.n_unmasked) & (k_pos < self.n_unmasked))
        return mask

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, start: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        hs = C // self.n_head
        q = self.query(x).view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.key(x).view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = self.value(x).view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(layer, start, k, v)  # (B, nh, start+T, hs)
        dropout = self.attn_pdrop if self.training else 0.0
        if start == 0 and k.shape[2] == T and not self.n_unmasked:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        elif T == 1 and not self.n_unmasked:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)  # one new token sees everything before
        else:
            mask = self._mask(start, T, k.shape[2], x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.proj(y))
