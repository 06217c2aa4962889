"""The GPT of the second stage, with the original minGPT parameterisation.

Keys match a Net2NetTransformer checkpoint's ``transformer.*`` entries (``tok_emb``, ``pos_emb``,
``blocks.N.{ln1,ln2,attn.{key,query,value,proj},mlp.{0,2}}``, ``ln_f``, ``head``), minus the
``attn.mask`` buffers, which vqforge does not store (SDPA builds the causal mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn.attention import CausalSelfAttention
from ..nn.kv_cache import KVCache


@dataclass(frozen=True)
class GPTConfig:
    """minGPT hyper-parameters (the original's ``transformer_config.params``)."""

    vocab_size: int = 1024
    block_size: int = 256
    n_layer: int = 12
    n_head: int = 8
    n_embd: int = 256
    embd_pdrop: float = 0.0
    resid_pdrop: float = 0.0
    attn_pdrop: float = 0.0
    n_unmasked: int = 0

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg.n_embd, cfg.n_head, cfg.attn_pdrop, cfg.resid_pdrop, cfg.n_unmasked)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd),
            nn.GELU(),  # exact erf GELU, as the original
            nn.Linear(4 * cfg.n_embd, cfg.n_embd),
            nn.Dropout(cfg.resid_pdrop),
        )

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, start: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache=cache, layer=layer, start=start)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer over token ids, returning logits (B, T, vocab_size).

    ``embeddings`` (B, Tc, n_embd), when given, are prepended before the token embeddings (the original's
    option for continuous conditioning). With ``cache``, keys/values are written at positions
    [start, start+T) and attention covers everything cached before them.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, cfg.block_size, cfg.n_embd))
        self.drop = nn.Dropout(cfg.embd_pdrop)
        self.blocks = nn.Sequential(*[Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

    def new_cache(self, batch_size: int, max_len: int | None = None, device=None, dtype=None) -> KVCache:
        """A fresh cache for ``batch_size`` sequences of up to ``max_len`` (default block_size) tokens."""
        c = self.config
        p = self.pos_emb
        return KVCache(c.n_layer, batch_size, c.n_head, max_len or c.block_size, c.head_dim,
                       device=device or p.device, dtype=dtype or p.dtype)

    def forward(self, idx: torch.Tensor, embeddings: torch.Tensor | None = None,
                cache: KVCache | None = None, start: int = 0) -> torch.Tensor:
        x = self.tok_emb(idx)  # (B, T, C)
        if embeddings is not None:
            x = torch.cat((embeddings, x), dim=1)
        T = x.shape[1]
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.config.block_size}")
        x = self.drop(x + self.pos_emb[:, start:start + T])
        for i, block in enumerate(self.blocks):
            x = block(x, cache=cache, layer=i, start=start)
        if cache is not None:
            cache.length = start + T
        return self.head(self.ln_f(x))  # (B, T, vocab)
