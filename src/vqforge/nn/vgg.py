"""VGG16 convolutional trunk in plain torch, with torchvision's parameter names.

:class:`VGG16Features` holds ``features`` as torchvision's ``vgg16().features`` does, so the standard
ImageNet weights ``vgg16-397923af.pth`` (keys ``features.N.weight`` / ``features.N.bias``; the
``classifier.*`` keys are ignored) load without renaming. Nothing here downloads anything:
:func:`locate_vgg16_weights` only looks in an explicit path and the torch hub cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..io import VQForgeError, load_torch

__all__ = ["VGG16_FILENAME", "VGG16_URL", "VGG16Features", "LPIPS_TAPS", "vgg16_search_paths",
           "locate_vgg16_weights", "load_vgg16_features"]

VGG16_FILENAME = "vgg16-397923af.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
#: how a training command is given the VGG16 file's path (a dotted override after the subcommand, or the config)
TRAIN_VGG_OPTION = f"add loss.perceptual_vgg_path=/path/to/{VGG16_FILENAME} to the train command"

# torchvision's VGG16 configuration "D": channel counts, "M" = 2x2 max-pool.
_CFG_D: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                 512, 512, 512, "M")

# Indices in ``features`` of the ReLUs after conv1_2, conv2_2, conv3_3, conv4_3, conv5_3 (what LPIPS uses).
LPIPS_TAPS: tuple[int, ...] = (3, 8, 15, 22, 29)


class VGG16Features(nn.Module):
    """VGG16 ``features`` (13 3x3 convs + ReLUs + 5 max-pools; indices as torchvision's).

    ``forward(x, taps)`` runs the trunk only as far as the deepest tap and returns the activations
    after each module index in ``taps`` (default: LPIPS's relu1_2 ... relu5_3).
    """

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _CFG_D:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_ch = int(v)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, taps: tuple[int, ...] = LPIPS_TAPS) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        last = max(taps)
        h = x  # (B, 3, H, W), ImageNet-normalised by the caller
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in taps:
                out.append(h)
            if i == last:
                break
        return out

    def load_features(self, state_dict: dict[str, torch.Tensor], source: str = "VGG16 weights") -> None:
        """Load the ``features.*`` entries of a torchvision VGG16 state dict (other keys are ignored).

        Raises :class:`VQForgeError` naming ``source`` when keys are missing or shapes disagree.
        """
        feats = {k: v for k, v in state_dict.items() if k.startswith("features.")}
        own = self.state_dict()
        missing = sorted(set(own) - set(feats))
        if missing:
            raise VQForgeError(f"{source}: not a torchvision VGG16 state dict (missing {', '.join(missing[:3])}"
                               f"{' ...' if len(missing) > 3 else ''})")
        for k in own:
            if tuple(feats[k].shape) != tuple(own[k].shape):
                raise VQForgeError(f"{source}: {k} has shape {tuple(feats[k].shape)}, expected {tuple(own[k].shape)}")
        self.load_state_dict({k: feats[k] for k in own})


def vgg16_search_paths(path: str | os.PathLike | None = None) -> list[Path]:
    """Where :func:`locate_vgg16_weights` looks, in order: ``path`` if given (a file, or a folder holding
    ``vgg16-397923af.pth``), otherwise the torch hub cache ``torch.hub.get_dir()/checkpoints/``
    (which follows ``$TORCH_HOME``)."""
    if path is not None:
        p = Path(path).expanduser()
        return [p / VGG16_FILENAME if p.is_dir() else p]
    return [Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME]


def locate_vgg16_weights(path: str | os.PathLike | None = None, offline_hint: str = "",
                         path_option: str = TRAIN_VGG_OPTION) -> Path:
    """The VGG16 weights file, or a :class:`VQForgeError` that names the file, every place looked in,
    where to get it, the option that gives its path (``path_option``) and ``offline_hint`` (what works
    without it)."""
    candidates = vgg16_search_paths(path)
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(str(c) for c in candidates)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    raise VQForgeError(
        f"{VGG16_FILENAME}: ImageNet VGG16 weights not found (looked in: {looked}); download {VGG16_URL} "
        f"into {hub}/ or give its path: {path_option}{offline_hint}"
    )


def load_vgg16_features(path: str | os.PathLike | None = None, offline_hint: str = "",
                        path_option: str = TRAIN_VGG_OPTION) -> VGG16Features:
    """A :class:`VGG16Features` with the standard ImageNet weights (see :func:`locate_vgg16_weights`)."""
    file = locate_vgg16_weights(path, offline_hint, path_option)
    sd = load_torch(file, what="VGG16 weights")
    if not isinstance(sd, dict):
        raise VQForgeError(f"{file}: VGG16 weights: expected a state dict, got {type(sd).__name__}")
    net = VGG16Features()
    net.load_features(sd, source=str(file))
    return net
