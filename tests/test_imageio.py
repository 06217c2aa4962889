"""One image reader (`vqforge.imageio`): every command, the web app and training read a file the same way.

The odd files are the ones a careful user has: a 16-bit PNG, an RGBA PNG with transparent pixels, a palette PNG
with a transparent colour, a gray image, and a phone JPEG stored on its side with an EXIF orientation. Each is
read by training (``ImageDataset``), by ``reconstruct`` / ``evaluate recon`` (``load_image_tensor`` /
``image_batches``), by ``complete`` (``read_pair``) and by the web app (``serve.images.decode_photo``): all must
give the same tensor, at the channel count the model was trained on. The grayscale bundled model (``fashion``)
goes through ``reconstruct``, ``complete`` and ``evaluate recon``.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from vqforge.cli import main
from vqforge.data.images import ImageDataset, image_batches, load_image_tensor, read_pair
from vqforge.imageio import read_image
from vqforge.serve.forms import Limits
from vqforge.serve.images import decode_photo

pytestmark = pytest.mark.usefixtures("one_thread")


def _odd_files(d):
    """name -> (path, the (H, W, 3) uint8 picture a person sees in it)."""
    rng = np.random.default_rng(0)
    seen = {}
    g16 = (rng.random((16, 16)) * 65535).astype(np.uint16)
    Image.fromarray(g16).save(d / "sixteen.png")
    assert Image.open(d / "sixteen.png").mode.startswith("I")
    seen["sixteen"] = np.repeat(np.rint(g16 / 257.0).astype(np.uint8)[..., None], 3, 2)
    rgba = (rng.random((16, 16, 4)) * 255).astype(np.uint8)
    rgba[:, 8:, 3] = 0  # right half transparent: a viewer shows white (the page background), not the stored colour
    rgba[:, :8, 3] = 255
    Image.fromarray(rgba, "RGBA").save(d / "alpha.png")
    alpha = rgba[..., :3].copy()
    alpha[:, 8:] = 255
    seen["alpha"] = alpha
    pal = Image.fromarray(np.tile(np.arange(4, dtype=np.uint8), (16, 4)), "P")
    pal.putpalette([10, 20, 30, 200, 100, 0, 0, 0, 0, 5, 250, 5] + [0] * 756)
    pal.info["transparency"] = 2
    pal.save(d / "palette.png", transparency=2)
    cols = np.array([[10, 20, 30], [200, 100, 0], [255, 255, 255], [5, 250, 5]], np.uint8)
    seen["palette"] = cols[np.tile(np.arange(4), (16, 4))]
    gray = (rng.random((16, 16)) * 255).astype(np.uint8)
    Image.fromarray(gray, "L").save(d / "gray.png")
    seen["gray"] = np.repeat(gray[..., None], 3, 2)
    upright = np.zeros((16, 16, 3), np.uint8)
    upright[:4] = 255  # a white band at the top, as the photo was seen
    stored = np.rot90(upright, 1).copy()  # the camera stored it turned a quarter; EXIF orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(d / "phone.png", exif=exif)
    seen["phone"] = upright
    return {k: (d / f"{k}.png", v) for k, v in seen.items()}


def _t(arr):  # (H, W, C) uint8 -> (C, H, W) in [-1, 1]
    return torch.from_numpy(arr.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)


def _gray(arr):  # what "L" makes of an RGB picture (ITU-R 601 luma, PIL's rounding)
    return np.asarray(Image.fromarray(arr).convert("L"))[..., None]


@pytest.mark.parametrize("channels", [3, 1])
def test_every_reader_sees_what_a_person_sees(tmp_path, channels):
    files = _odd_files(tmp_path)
    limits = Limits()
    for name, (path, seen) in files.items():
        want = _t(seen if channels == 3 else _gray(seen))  # (C, 16, 16)
        got = {
            "training": ImageDataset([path], size=16, crop="center", channels=channels)[0]["image"],
            "reconstruct": load_image_tensor(path, channels=channels),
            "evaluate": next(iter(image_batches([path], 1, 16, 1, channels)))[0],
            "complete": read_pair(path, path, (16, 16), channels=channels)[0],
            "serve": decode_photo(path.read_bytes(), name, limits, 1, channels),
        }
        for who, x in got.items():
            assert x.shape == want.shape, (name, who, x.shape)
            assert torch.allclose(x, want, atol=1.01 / 127.5), (name, who, (x - want).abs().max())


def test_a_16bit_png_is_scaled_not_clipped_to_white(tmp_path):
    """The issue's case: a 16-bit PNG of mid gray was 99.8% white in reconstruct (PIL's convert("RGB") clips)."""
    Image.fromarray(np.full((16, 16), 32768, np.uint16)).save(tmp_path / "mid.png")
    assert np.asarray(read_image(tmp_path / "mid.png")).max() == 128
    assert load_image_tensor(tmp_path / "mid.png").abs().max() < 0.01


def test_the_grayscale_model_reconstructs_completes_and_evaluates(tmp_path, capsys):
    """``--model fashion`` (1 channel) through the three commands that crashed with a channel traceback."""
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((28, 28, 3)) * 255).astype(np.uint8)).save(tmp_path / "shoe.png")
    Image.fromarray((rng.random((28, 28)) * 65535).astype(np.uint16)).save(tmp_path / "deep.png")
    mask = np.zeros((28, 28), np.uint8)
    mask[8:20, 8:20] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    data = tmp_path / "data"
    data.mkdir()
    for n in ("shoe.png", "deep.png"):
        (data / n).write_bytes((tmp_path / n).read_bytes())
    assert main(["reconstruct", "--model", "fashion", "--data", str(data), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    psnr = json.loads((tmp_path / "r" / "psnr.json").read_text())
    assert set(psnr["per_image"]) == {"shoe.png", "deep.png"} and all(np.isfinite(list(psnr["per_image"].values())))
    assert Image.open(tmp_path / "r" / "deep.png").mode == "L"
    assert main(["complete", "--model", "fashion", "--class", "sneaker", "--data", str(tmp_path / "shoe.png"),
                 "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "c"), "--num", "1", "--quiet"]) == 0
    assert Image.open(tmp_path / "c" / "00000.png").size == (28, 28)
    out = tmp_path / "e.json"
    assert main(["evaluate", "recon", "--model", "fashion", "--data", str(data), "--no-fid", "--batch-size", "2",
                 "--quiet", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["n_images"] == 2


def test_serve_reads_uploads_with_the_same_reader(tmp_path):
    """An upload is decoded by vqforge.imageio (no second stack): a 16-bit upload is scaled like a file."""
    Image.fromarray(np.full((16, 16), 32768, np.uint16)).save(buf := io.BytesIO(), format="PNG")
    x = decode_photo(buf.getvalue(), "image", Limits(), 4, 3)
    assert x.shape == (3, 16, 16) and x.abs().max() < 0.01  # mid gray, not clipped to white
