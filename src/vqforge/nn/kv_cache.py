"""A preallocated key/value cache, passed explicitly to the transformer (never stored on the model)."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer, written by position; :meth:`update` is its only writer.

    Shapes: ``k[layer]`` and ``v[layer]`` are (B, n_head, max_len, head_dim). ``length`` is how many leading
    positions have been written (one past the highest position written since the last :meth:`reset`). The
    buffers, ``length``'s included, never change shape or address, so a decode step over them can be compiled
    or CUDA-graph captured. Attention reads the whole buffer under a mask built from the query positions, so
    slots left over from an earlier sequence are never attended.
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, max_len: int, head_dim: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (n_layer, batch_size, n_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self._length = torch.zeros((), dtype=torch.long, device=device)  # updated in place, in-graph

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def length(self) -> int:
        """One past the highest position written since the last :meth:`reset` (reading it synchronises)."""
        return int(self._length)

    def reset(self) -> None:
        self._length.zero_()

    def rows(self, start: int, stop: int) -> "KVCache":
        """A cache over batch rows [start, stop) of this one, sharing its buffers (a write through either is seen
        by both), with its own ``length``: one sequence group of a batch whose groups advance separately."""
        view = KVCache.__new__(KVCache)
        view.k, view.v = self.k[:, start:stop], self.v[:, start:stop]  # (L, stop - start, nh, M, hs) views
        view.max_len = self.max_len
        view._length = torch.zeros((), dtype=torch.long, device=self.k.device)
        return view

    def static(self) -> "KVCache":
        """Mark the buffers as fixed-address inputs for ``torch.compile`` (CUDA graphs write into them)."""
        for t in (self.k, self.v, self._length):
            torch._dynamo.mark_static_address(t)
        return self

    def update(self, layer: int, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, nh, T, hs) of ``layer`` at positions ``input_pos`` (T,); return the whole buffers.

        The returned keys/values are (B, nh, max_len, hs); the caller masks the slots its queries may not see.
        Positions outside [0, max_len) raise an IndexError (eagerly) before anything is written.
        """
        keys, values = self.k[layer], self.v[layer]  # (B, nh, M, hs)
        keys.index_copy_(2, input_pos, k.to(keys.dtype))
        values.index_copy_(2, input_pos, v.to(values.dtype))
        if layer == 0:
            self._length.copy_(torch.maximum(self._length, input_pos.max() + 1))
        return keys, values
