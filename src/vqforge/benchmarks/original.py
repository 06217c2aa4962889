"""The original implementation (``taming-transformers-rom1504==0.0.6``), built for side-by-side timing.

The original is never a dependency of vqforge: it is imported only here, from a benchmark environment where it
was installed with ``pip install --no-deps taming-transformers-rom1504==0.0.6 einops`` (``make bench-venv``).
Three of its imports need stand-ins, installed only for the duration of the import:

* ``transformers.top_k_top_p_filtering`` (gone from current ``transformers``): a small equivalent;
* ``torchvision.models.vgg16`` (its LPIPS trunk): vqforge's :class:`~vqforge.nn.vgg.VGG16Features`, which has
  torchvision's layout, with random weights (timing only: nothing is downloaded);
* ``requests`` (its download helper, never called here): an empty module when the real one is missing.

Modules are built directly (no Lightning), under the original attribute names, so one state dict loads into both
implementations; :class:`OrigVQModel` is the original ``VQModel`` minus Lightning.
"""

from __future__ import annotations

import contextlib
import sys
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..io import VQForgeError
from ..nn.vgg import VGG16Features

PACKAGE = "taming-transformers-rom1504==0.0.6"


class OriginalUnavailable(VQForgeError):
    """The original implementation cannot be imported in this environment."""


def top_k_top_p_filtering(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0,
                          filter_value: float = -float("inf")) -> torch.Tensor:
    """What the original imports from ``transformers``: keep the ``top_k`` largest logits, then the smallest
    set of most likely tokens whose probability mass exceeds ``top_p`` (always keeping the most likely one)."""
    if top_k and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1)))[0][..., -1, None]  # (B, 1)
        logits = logits.masked_fill(logits < kth, filter_value)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = F.softmax(sorted_logits, dim=-1).cumsum(dim=-1)  # (B, V)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()  # keep the token that crosses top_p
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(1, order, remove), filter_value)
    return logits


def _vgg16(pretrained: bool = False, **_: Any) -> VGG16Features:
    """torchvision's ``models.vgg16`` for the original's LPIPS: same layers, random weights, no download."""
    return VGG16Features()


@contextlib.contextmanager
def _stand_ins():
    """Put the stand-in modules into ``sys.modules`` while the original is imported, then restore."""
    transformers = types.ModuleType("transformers")
    transformers.top_k_top_p_filtering = top_k_top_p_filtering  # type: ignore[attr-defined]
    torchvision = types.ModuleType("torchvision")
    torchvision.models = types.SimpleNamespace(vgg16=_vgg16)  # type: ignore[attr-defined]
    stand_ins = {"transformers": transformers, "torchvision": torchvision}
    try:
        import requests  # noqa: F401  (only its download helper uses it)
    except ImportError:
        stand_ins["requests"] = types.ModuleType("requests")
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


_MODULES: types.SimpleNamespace | None = None


def load() -> types.SimpleNamespace:
    """The original's modules (``Encoder``, ``Decoder``, ``VectorQuantizer2``, ``GPT``, ``sample_with_past``,
    ``VQLPIPSWithDiscriminator``, ``lpips``); raises :class:`OriginalUnavailable` when it is not installed."""
    global _MODULES
    if _MODULES is not None:
        return _MODULES
    try:
        with _stand_ins():
            from taming.modules.diffusionmodules.model import Decoder, Encoder
            from taming.modules.losses import lpips
            from taming.modules.losses.vqperceptual import VQLPIPSWithDiscriminator
            from taming.modules.transformer.mingpt import GPT, sample_with_past
            from taming.modules.vqvae.quantize import VectorQuantizer2
    except ImportError as e:
        raise OriginalUnavailable(f"the original ({PACKAGE}) is not importable here ({e}); "
                                  f"see `make bench-venv`") from None
    lpips.LPIPS.load_from_pretrained = lambda self, name="vgg_lpips": None  # random weights, no download
    lpips.models = types.SimpleNamespace(vgg16=_vgg16)  # also where a real torchvision is installed
    _MODULES = types.SimpleNamespace(Encoder=Encoder, Decoder=Decoder, VectorQuantizer2=VectorQuantizer2,
                                     GPT=GPT, sample_with_past=sample_with_past, lpips=lpips,
                                     VQLPIPSWithDiscriminator=VQLPIPSWithDiscriminator)
    return _MODULES


def available() -> str | None:
    """None when the original imports, else the reason it does not."""
    try:
        load()
    except OriginalUnavailable as e:
        return str(e)
    return None


class OrigVQModel(nn.Module):
    """The original ``VQModel`` without Lightning: encoder, quant_conv, quantize, post_quant_conv, decoder and
    (optionally) ``loss`` under the original's attribute names, so its state dict is a Taming checkpoint's."""

    def __init__(self, ddconfig: dict, n_embed: int, embed_dim: int, loss: nn.Module | None = None):
        super().__init__()
        m = load()
        self.encoder = m.Encoder(**ddconfig)
        self.decoder = m.Decoder(**ddconfig)
        self.quantize = m.VectorQuantizer2(n_embed, embed_dim, beta=0.25)  # legacy=True, as VQModel builds it
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)
        if loss is not None:
            self.loss = loss

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        """What the original's first optimiser updates (``configure_optimizers``)."""
        return [p for m in (self.encoder, self.decoder, self.quantize, self.quant_conv, self.post_quant_conv)
                for p in m.parameters()]

    def get_last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        quant, diff, _ = self.quantize(self.quant_conv(self.encoder(x)))
        return self.decoder(self.post_quant_conv(quant)), diff


def build_loss(disc_start: int = 0) -> nn.Module:
    """The original ``VQLPIPSWithDiscriminator`` (hinge, LPIPS on a random-weight VGG16)."""
    return load().VQLPIPSWithDiscriminator(disc_start=disc_start)
