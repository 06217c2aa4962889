"""A preallocated key/value cache, passed explicitly to the transformer (never stored on the model)."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer, written by position.

    Shapes: ``k[layer]`` and ``v[layer]`` are (B, n_head, max_len, head_dim). ``length`` is how many
    positions hold valid entries. The buffers never change shape, so a decode step over them can be
    compiled or graph-captured.
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, max_len: int, head_dim: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (n_layer, batch_size, n_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.length = 0

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def reset(self) -> None:
        self.length = 0

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, nh, T, hs) at positions [start, start+T) of ``layer``; return all valid keys/values."""
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: position {end} > max_len {self.max_len}")
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]  # (B, nh, end, hs)
