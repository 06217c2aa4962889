"""Fast VQGAN inference: one object that runs a :class:`~vqforge.models.vqgan.VQGAN` with the speed levers on.

=================== =======================================================================================
lever               what it does
=================== =======================================================================================
``precision``       ``fp32``: the exact path (the original's numbers). ``bf16``: bf16 autocast for encoder
                    and decoder (convolutions on the matrix units: AMX on CPUs with native bf16, tensor
                    cores on CUDA); the codebook lookup always runs in fp32 (see :meth:`VQGAN.encode`).
                    ``auto``: bf16 where the device runs it natively, else fp32 (:mod:`vqforge.devices`).
``channels_last``   NHWC activations (oneDNN's and cuDNN's preferred layout); ``None``: on with bf16.
``compile``         ``torch.compile`` of encoder and decoder; off unless asked for (it pays only for
                    long runs of same-shaped batches, and costs a compile per new shape).
=================== =======================================================================================

Measured by ``vqforge bench`` (row ``vqgan_reconstruct``, docs/benchmarks.md).
"""

from __future__ import annotations

import torch

from ..devices import autocast, resolve_precision
from .vqgan import VQGAN, VQGANOutput


class VQGANRunner:
    """Inference-only view of a VQGAN with the chosen levers: ``runner(x)``, ``encode_to_indices(x)``,
    ``decode_indices(idx)``. Inputs are (B, C, H, W) in [-1, 1]; outputs are fp32 and contiguous (NCHW)."""

    def __init__(self, model: VQGAN, precision: str = "auto", channels_last: bool | None = None,
                 compile: bool = False):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.dtype = resolve_precision(precision, self.device)
        self.channels_last = self.dtype == torch.bfloat16 if channels_last is None else channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._encoder, self._decoder = model.encoder, model.decoder
        if compile:
            self._encoder = torch.compile(model.encoder, dynamic=False)
            self._decoder = torch.compile(model.decoder, dynamic=False)

    @property
    def mode(self) -> str:
        """What runs, e.g. ``bf16+channels_last`` or ``fp32``."""
        parts = ["bf16" if self.dtype == torch.bfloat16 else "fp32"]
        if self.channels_last:
            parts.append("channels_last")
        if self._encoder is not self.model.encoder:
            parts.append("compiled")
        return "+".join(parts)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _encode(self, x: torch.Tensor):
        m = self.model
        with autocast(self.device, self.dtype):
            h = m.quant_conv(self._encoder(self._input(x)))  # (B, embed_dim, h, w)
        return m.quantize_latents(h)

    def _decode(self, quant: torch.Tensor) -> torch.Tensor:
        m = self.model
        if self.channels_last:
            quant = quant.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.dtype):
            rec = self._decoder(m.post_quant_conv(quant))  # (B, out_ch, H, W)
        return rec.float().contiguous()

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> VQGANOutput:
        q = self._encode(x)
        return VQGANOutput(self._decode(q.quantized), q)

    @torch.inference_mode()
    def encode_to_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Codebook ids (B, h, w)."""
        return self._encode(x).indices

    @torch.inference_mode()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Images (B, out_ch, H, W), fp32, from codebook ids (B, h, w)."""
        return self._decode(self.model.quantize.embed_indices(indices))
