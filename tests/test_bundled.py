"""Bundled models: loaded by name from the package, stored as float16, listed by `vqforge models`."""

from __future__ import annotations

import subprocess

import pytest
import torch

import vqforge
from vqforge import bundled
from vqforge.models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
from vqforge.quantizers import VQConfig

from conftest import PYTHON, cli_env


def _tiny_vqgan() -> VQGAN:
    torch.manual_seed(0)
    return VQGAN(VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                                               resolution=16, z_channels=8), VQConfig(n_embed=16, embed_dim=8)))


@pytest.fixture
def fake_bundle(tmp_path, monkeypatch):
    """A bundled-model folder holding one tiny VQGAN called 'tiny', saved as the bundling step saves (fp16)."""
    model = _tiny_vqgan().eval()
    vqforge.save_model(model, tmp_path / "tiny", dtype=torch.float16,
                       extra={"summary": "a tiny test model", "use": "tests only"})
    monkeypatch.setattr(bundled, "BUNDLED_DIR", tmp_path)
    return model


def test_load_by_name_gives_a_float32_model_close_to_the_saved_one(fake_bundle):
    loaded = vqforge.load("tiny")
    assert isinstance(loaded, VQGAN)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        a, b = fake_bundle(x).reconstruction, loaded(x).reconstruction
    # fp16 storage rounds each weight by at most 2^-11 relatively: outputs stay close, not bit-equal
    assert (a - b).abs().max() < 2e-2
    assert not torch.equal(fake_bundle.encoder.conv_in.weight, loaded.encoder.conv_in.weight)


def test_fp16_storage_halves_the_file(tmp_path):
    model = _tiny_vqgan()
    vqforge.save_model(model, tmp_path / "a")
    vqforge.save_model(model, tmp_path / "b", dtype=torch.float16)
    a, b = (tmp_path / "a" / "model.safetensors").stat().st_size, (tmp_path / "b" / "model.safetensors").stat().st_size
    assert b < 0.55 * a


def test_a_local_path_wins_over_a_bundled_name(fake_bundle, tmp_path, monkeypatch):
    other = _tiny_vqgan()
    torch.nn.init.zeros_(other.decoder.conv_out.weight)
    vqforge.save_model(other, tmp_path / "here" / "tiny")
    monkeypatch.chdir(tmp_path / "here")
    assert torch.count_nonzero(vqforge.load("tiny").decoder.conv_out.weight) == 0


def test_unknown_name_lists_the_bundled_models(fake_bundle):
    with pytest.raises(vqforge.VQForgeError, match=r"nosuch: no such file or directory nor a bundled model \(tiny\)"):
        vqforge.load("nosuch")


def test_models_command_lists_cards(fake_bundle):
    from vqforge.cli import main

    import io
    import contextlib

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["models"]) == 0
    out = buf.getvalue()
    assert "tiny" in out and "a tiny test model" in out and "use: tests only" in out


def test_every_shipped_model_loads_and_its_card_is_complete():
    """The models committed under src/vqforge/bundled load by name and say how they were made; the two the README
    promises (fashion, landscapes) are there (an empty bundle must fail this test, not pass it vacuously)."""
    shipped = bundled.list_models()
    assert {"fashion", "landscapes"} <= {m.name for m in shipped}, [m.name for m in shipped]
    for m in shipped:
        model = vqforge.load(m.name)
        assert type(model).__name__ in ("VQGAN", "Net2NetTransformer")
        for key in ("summary", "use", "trained_on", "command", "steps", "wall_time", "machine"):
            assert m.card.get(key), f"{m.name}: model card lacks {key!r}"
    r = subprocess.run([PYTHON, "-m", "vqforge", "models"], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert r.returncode == 0 and all(m.name in r.stdout for m in shipped)


def test_the_landscapes_condition_stage_keeps_held_out_maps():
    """The shipped segmentation stage keeps the labels of maps it never saw (the 4 bundled for the demo), as the
    transformer needs: encoded to tokens and decoded, 85% of their pixels at the trained 64 px (measured; the
    stage shipped before kept 35%: docs/models.md). Each map must keep most of its pixels."""
    from importlib import resources

    import numpy as np
    from PIL import Image

    from vqforge.data.images import plan_crop
    from vqforge.imageio import read_image

    model = vqforge.load("landscapes").eval()
    f = model.cond_stage.downsample_factor
    maps = sorted(p for p in (resources.files("vqforge") / "demo_assets" / "segmentations").iterdir())
    accs = []
    with torch.inference_mode():
        for mp in maps:  # the centre 64 px square of each map (the trained size), label ids kept (nearest)
            im = read_image(mp, mode=None)
            crop = plan_crop(im.size, 64, resize=64, multiple_of=f)
            labels = torch.from_numpy(np.asarray(crop.apply(im, Image.NEAREST)).astype(np.int64))
            tokens = model.encode_to_c(model.condition.build_input(raw=labels[None]))
            back = model.decode_cond(tokens, (64 // f, 64 // f)).argmax(1)[0]
            accs.append((back == labels).float().mean().item())
    assert len(accs) == 4 and min(accs) > 0.6 and sum(accs) / 4 > 0.8, accs


def test_the_landscapes_first_stage_keeps_colour():
    """The shipped first stage gives held-out photos (the 18 bundled for the demo, never trained on) back at
    >= 20 dB, channel means within 8.5 of 255 levels and saturation >= 0.63 x the photos' (measured 20.7 dB, 8.0,
    0.65 by bench/landscape_colour.py; the first stage shipped before: 18.9 dB, 8.6, 0.61 x: sand and sea grey)."""
    from pathlib import Path

    from vqforge.data.images import load_image_tensor
    from vqforge.metrics import psnr

    def saturation(x):  # (1, 3, H, W) in [-1, 1] -> mean HSV saturation
        mx, mn = (x + 1).amax(1) / 2, (x + 1).amin(1) / 2
        return float(torch.where(mx > 1e-6, (mx - mn) / mx.clamp_min(1e-6), torch.zeros_like(mx)).mean())

    vq = vqforge.load("landscapes").first_stage.eval()
    photos = sorted((Path(vqforge.__file__).parent / "demo_assets" / "photos").iterdir())
    db, mean_err, sat_rec, sat_photo = [], [], [], []
    with torch.inference_mode():
        for p in photos:
            x = load_image_tensor(p, multiple_of=vq.downsample_factor)[None]  # (1, 3, H, W)
            rec = vq.decode_indices(vq.encode_to_indices(x)).clamp(-1, 1)
            db.append(float(psnr(rec, x)))
            mean_err.append(float(((rec - x).mean((0, 2, 3)) * 127.5).abs().mean()))  # 8-bit levels
            sat_rec.append(saturation(rec))
            sat_photo.append(saturation(x))
    n = len(photos)
    ratio = sum(sat_rec) / sum(sat_photo)
    assert n == 18 and sum(db) / n >= 20.0, sum(db) / n
    assert sum(mean_err) / n <= 8.5 and ratio >= 0.63, (sum(mean_err) / n, ratio)  # before: 8.6 and 0.61
