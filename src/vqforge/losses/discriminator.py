"""PatchGAN discriminator of the original (``NLayerDiscriminator``, Pix2Pix style) and ``ActNorm``.

The layer layout is the original's, so the ``loss.discriminator.*`` weights of a Taming checkpoint load
into :class:`NLayerDiscriminator` after the prefix is stripped (keys ``main.N.*``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ActNorm", "NLayerDiscriminator", "weights_init", "strip_prefix"]


class ActNorm(nn.Module):
    """Per-channel affine normalisation with data-dependent initialisation (Glow's ActNorm).

    On the first forward pass in training mode, ``loc`` and ``scale`` are set so that the batch's
    output has zero mean and unit standard deviation per channel; afterwards they are ordinary
    parameters. The buffer ``initialized`` (uint8) records whether that happened and is saved with
    the weights, as in the original.
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        self.scale = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set ``loc``/``scale`` from the statistics of ``x`` (B, C, H, W)."""
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, B*H*W)
        mean = flat.mean(1).view(1, -1, 1, 1)
        std = flat.std(1).view(1, -1, 1, 1)  # unbiased, as the original
        self.loc.copy_(-mean)
        self.scale.copy_(1.0 / (std + 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.dim() == 2
        if squeeze:
            x = x[:, :, None, None]  # (B, C) -> (B, C, 1, 1)
        if self.training and int(self.initialized.item()) == 0:
            self.initialize(x)
            self.initialized.fill_(1)
        h = self.scale * (x + self.loc)
        return h[:, :, 0, 0] if squeeze else h

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`forward` (requires an initialised layer)."""
        if self.training and int(self.initialized.item()) == 0:
            raise RuntimeError("ActNorm: cannot initialise in the reverse direction")
        return y / self.scale - self.loc


def weights_init(m: nn.Module) -> None:
    """The original's initialisation, for use with ``module.apply``.

    Convolutions: weight ~ N(0, 0.02) (biases keep PyTorch's default). BatchNorm: weight ~ N(1, 0.02),
    bias 0. ActNorm is left alone (it initialises itself from data).
    """
    name = m.__class__.__name__
    if "Conv" in name:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator: image (B, input_nc, H, W) -> real/fake logits (B, 1, h, w).

    ``n_layers`` stride-2 4x4 convolutions (the first without normalisation), one stride-1 conv with
    normalisation, then a stride-1 conv to one channel; LeakyReLU(0.2) in between. Width doubles per
    layer from ``ndf`` up to ``8 * ndf``. Normalisation is BatchNorm (convs before it have no bias) or,
    with ``use_actnorm``, :class:`ActNorm` (convs keep their bias). Weights are initialised with
    :func:`weights_init`, as the original's loss module does.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, use_actnorm: bool = False):
        super().__init__()
        norm_layer = ActNorm if use_actnorm else nn.BatchNorm2d
        use_bias = use_actnorm  # BatchNorm has its own affine shift
        kw, padw = 4, 1
        seq: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, kw, stride=2, padding=padw, bias=use_bias),
                    norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, kw, stride=1, padding=padw, bias=use_bias),
                norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, kw, stride=1, padding=padw)]
        self.main = nn.Sequential(*seq)
        self.apply(weights_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)  # (B, 1, h, w)


def strip_prefix(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state_dict`` whose key starts with ``prefix``, with the prefix removed.

    E.g. ``strip_prefix(ckpt["state_dict"], "loss.discriminator.")`` gives :class:`NLayerDiscriminator` weights.
    """
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
