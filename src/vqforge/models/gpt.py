"""The GPT of the second stage, with the original minGPT parameterisation.

Keys match a Net2NetTransformer checkpoint's ``transformer.*`` entries (``tok_emb``, ``pos_emb``,
``blocks.N.{ln1,ln2,attn.{key,query,value,proj},mlp.{0,2}}``, ``ln_f``, ``head``), minus the
``attn.mask`` buffers, which vqforge does not store (SDPA builds the causal mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import nn

from ..nn.attention import CausalSelfAttention, attention_mask
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


class Scratch(dict):
    """What a model caches about itself at run time (a compiled decode step, a packed copy, a static cache).

    Never saved with the model and never copied: a deep copy or an unpickled model starts with an empty one.
    """

    def __deepcopy__(self, memo) -> "Scratch":
        return Scratch()

    def __reduce__(self):
        return (Scratch, ())


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)).

    ``checkpoint``: recompute the block's activations in the backward pass instead of keeping them (saves memory
    in training on long sequences; only where gradients flow and no cache is written).
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg.n_embd, cfg.n_head, cfg.attn_pdrop, cfg.resid_pdrop)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd),
            nn.GELU(),  # exact erf GELU, as the original
            nn.Linear(4 * cfg.n_embd, cfg.n_embd),
            nn.Dropout(cfg.resid_pdrop),
        )
        self.checkpoint = False

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, input_pos: torch.Tensor | None = None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        if self.checkpoint and cache is None and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._forward, x, mask, input_pos, use_reentrant=False)
        return self._forward(x, mask, input_pos, cache, layer)

    def _forward(self, x: torch.Tensor, mask: torch.Tensor | None, input_pos: torch.Tensor | None,
                 cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask, input_pos, cache, layer)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer over token ids, returning logits (B, T, vocab_size).

    The one forward for training, prefill and decoding (gpt-fast style): ``idx`` (B, T) at positions
    ``input_pos`` (T,) (default 0..T-1). ``embeddings`` (B, Tc, n_embd), when given, are prepended before the
    token embeddings (the original's option for continuous conditioning; ``input_pos`` then covers both). With
    ``cache`` (:class:`~vqforge.nn.kv_cache.KVCache`), each layer's keys/values are written at ``input_pos`` and
    attention covers the cache under a mask built from ``input_pos``: the whole cache when compiling or on CUDA
    (no shape depends on the position, so a one-token step is compiled and graph-captured once), the slots up to
    the last position when running eagerly on a CPU. ``config.n_unmasked`` is honoured on every path.
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
        self.scratch = Scratch()

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
        if max_len is not None and max_len > c.block_size:
            raise ValueError(f"a cache of {max_len} positions exceeds block_size {c.block_size}")
        return KVCache(c.n_layer, batch_size, c.n_head, max_len or c.block_size, c.head_dim,
                       device=device or p.device, dtype=dtype or p.dtype)

    def _mask(self, input_pos: torch.Tensor | None, T: int, cache: KVCache | None, device) -> torch.Tensor | None:
        """The attention mask (T, keys) for queries at ``input_pos``; None for plain causal attention."""
        n = self.config.n_unmasked
        if input_pos is None and cache is None and not n:
            return None  # SDPA's own causal mask (the training path)
        q_pos = torch.arange(T, device=device) if input_pos is None else input_pos
        if cache is None:
            return attention_mask(q_pos, q_pos, n)
        keys = cache.max_len  # fixed shapes: what a compiled (graph-captured) step needs
        if input_pos is not None and input_pos.device.type == "cpu" and not torch.compiler.is_compiling():
            keys = min(keys, max(int(input_pos.max()) + 1, n))  # eagerly on a CPU: only the slots it can see
            if T == 1:  # one query at p sees every slot below max(p + 1, n_unmasked): no mask to build or apply
                return keys
        return attention_mask(q_pos, torch.arange(keys, device=device), n)

    def forward(self, idx: torch.Tensor, input_pos: torch.Tensor | None = None, cache: KVCache | None = None,
                embeddings: torch.Tensor | None = None) -> torch.Tensor:
        x = self.tok_emb(idx)  # (B, T, C)
        if embeddings is not None:
            x = torch.cat((embeddings, x), dim=1)
        T = x.shape[1]
        if input_pos is None:
            if T > self.config.block_size:
                raise ValueError(f"sequence of {T} tokens exceeds block_size {self.config.block_size}")
            pos = self.pos_emb[:, :T]  # (1, T, C)
        else:
            pos = self.pos_emb.index_select(1, input_pos)  # (1, T, C)
        mask = self._mask(input_pos, T, cache, x.device)
        if cache is not None and input_pos is None:
            input_pos = torch.arange(T, device=x.device)
        x = self.drop(x + pos)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, input_pos, cache, i)
        return self.head(self.ln_f(x))  # (B, T, vocab)
