"""Property-based tests (hypothesis): image files from arbitrary bytes, pixel masks to token masks, and the
sliding-window placement rule."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a dev dependency (pip install -e '.[dev]')")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from vqforge.data.images import load_image_tensor  # noqa: E402
from vqforge.imageio import read_image  # noqa: E402
from vqforge.io import VQForgeError  # noqa: E402
from vqforge.sampling.complete import token_mask  # noqa: E402
from vqforge.sampling.generate import EXACT  # noqa: E402
from vqforge.sampling.sliding import window_bounds  # noqa: E402

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------------------------------ image files
def _encoded(fmt: str, mode: str, w: int, h: int, seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "P": 1, "I;16": 1}[mode]
    arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    img = Image.fromarray(arr[:, :, 0] if channels == 1 else arr, "L" if channels == 1 else mode)
    if mode in ("P", "I;16"):
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@st.composite
def image_bytes(draw):
    """Valid images of several formats and modes, then cut short, bit-flipped or spliced; or pure noise."""
    kind = draw(st.sampled_from(["noise", "valid", "truncated", "flipped", "header+noise"]))
    if kind == "noise":
        return draw(st.binary(max_size=512))
    fmt, mode = draw(st.sampled_from([("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("PNG", "P"),
                                      ("PNG", "I;16"), ("JPEG", "RGB"), ("JPEG", "L"), ("BMP", "RGB"),
                                      ("GIF", "P"), ("TIFF", "RGB"), ("WEBP", "RGB")]))
    data = _encoded(fmt, mode, draw(st.integers(1, 24)), draw(st.integers(1, 24)), draw(st.integers(0, 99)))
    if kind == "truncated":
        return data[:draw(st.integers(0, len(data) - 1))]
    if kind == "flipped":
        b = bytearray(data)
        for pos in draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=8)):
            b[pos] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if kind == "header+noise":
        return data[:draw(st.integers(1, 40))] + draw(st.binary(max_size=256))
    return data


@FAST
@given(data=image_bytes(), suffix=st.sampled_from([".png", ".jpg", ".gif", ".tif", ".webp", ".bmp"]))
def test_any_bytes_give_an_image_or_one_line_naming_the_file(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("img") / f"file{suffix}"
    path.write_bytes(data)
    try:
        x = load_image_tensor(path)
    except VQForgeError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(str(path)), msg
        return
    assert x.dtype == torch.float32 and x.dim() == 3 and x.shape[0] == 3 and x.shape[1] >= 1 and x.shape[2] >= 1
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1


@FAST
@given(w=st.integers(1, 40), h=st.integers(1, 40), size=st.integers(1, 48), f=st.sampled_from([1, 2, 4, 8, 16]))
def test_resize_and_crop_sizes(tmp_path_factory, w, h, size, f):
    """Shorter side resized to ``size``, both sides then cropped down to a multiple of ``f`` (or one line)."""
    path = tmp_path_factory.mktemp("img") / "a.png"
    path.write_bytes(_encoded("PNG", "RGB", w, h, 0))
    rw, rh = (max(1, round(w * size / min(w, h))), max(1, round(h * size / min(w, h))))
    try:
        x = load_image_tensor(path, size=size, multiple_of=f)
    except VQForgeError as e:
        assert min(rw, rh) < f and str(e).startswith(str(path)) and "\n" not in str(e)
        return
    assert x.shape == (3, rh // f * f, rw // f * f)


def test_read_image_keeps_modes_when_asked(tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(_encoded("PNG", "P", 5, 4, 1))
    assert read_image(path, mode=None).mode == "P" and read_image(path).mode == "RGB"


# ------------------------------------------------------------------------------------------ masks
@FAST
@given(h=st.integers(1, 5), w=st.integers(1, 5), f=st.sampled_from([1, 2, 4]), seed=st.integers(0, 2**16),
       density=st.floats(0.0, 1.0), batch=st.integers(1, 2))
def test_token_mask_marks_exactly_the_patches_that_hold_a_masked_pixel(h, w, f, seed, density, batch):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(batch, h * f, w * f, generator=g) < density * 0.2  # sparse: many patches stay clear
    tm = token_mask(pixels, f)
    assert tm.shape == (batch, h, w) and tm.dtype == torch.bool
    for b, i, j in itertools.product(range(batch), range(h), range(w)):
        assert bool(tm[b, i, j]) == bool(pixels[b, i * f:(i + 1) * f, j * f:(j + 1) * f].any())
    assert torch.equal(token_mask(pixels[:, None].float() * 255, f), tm)  # (B, 1, H, W), 0/255 values


@FAST
@given(h=st.integers(1, 40), w=st.integers(1, 40), f=st.sampled_from([2, 4, 16]))
def test_token_mask_refuses_sizes_off_the_token_grid(h, w, f):
    assume(h % f or w % f)
    with pytest.raises(ValueError, match=f"{h}x{w} is not a multiple of the downsampling factor {f}"):
        token_mask(torch.ones(h, w), f)


# ------------------------------------------------------------------------------------------ sliding window
@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 64), w=st.integers(1, 80), data=st.data())
def test_window_inside_the_grid_and_around_its_token(n, w, data):
    i = data.draw(st.integers(0, n - 1))
    start, local = window_bounds(i, n, w)
    size = min(w, n)
    assert 0 <= start and start + size <= n  # inside the grid
    assert 0 <= local < size and start + local == i  # holds the token
    if n > w and w % 2 == 0:  # the original's rule for its even windows (e.g. 16 tokens, half 8)
        expected_local = i if i <= w // 2 else (w - (n - i) if n - i < w // 2 else w // 2)
        assert local == expected_local


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 5), w=st.integers(1, 5), wh=st.integers(1, 5), ww=st.integers(1, 5),
       masked=st.booleans(), seed=st.integers(0, 2**16))
def test_every_token_is_predicted_exactly_once(monkeypatch_module, h, w, wh, ww, masked, seed):
    """A stand-in draw returns 1, 2, 3, ... in call order: the result is the raster numbering of the
    positions to fill (each once, in order), and kept tokens are untouched."""
    from vqforge.models.gpt import GPT, GPTConfig
    from vqforge.sampling import sliding

    wh, ww = min(wh, h), min(ww, w)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=128, block_size=1 + wh * ww, n_layer=1, n_head=1, n_embd=8)).eval()
    calls = []

    def draw(logits, settings, generator=None, n_vocab=None, guided=False):
        calls.append(1)
        return torch.full((logits.shape[0], 1), 100 + len(calls), dtype=torch.long)

    monkeypatch_module.setattr(sliding, "next_token", draw)
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(1, h, w, generator=g) < 0.5) if masked else None
    init = torch.full((1, h, w), 7, dtype=torch.long)
    out = sliding.sample_sliding(model, torch.zeros(1, 1, dtype=torch.long), (h, w), (wh, ww), init=init,
                                 mask=mask, decoding=EXACT)
    todo = torch.ones(h, w, dtype=torch.bool) if mask is None else mask[0]
    expected = torch.full((h, w), 7, dtype=torch.long)
    expected[todo] = 101 + torch.arange(int(todo.sum()))  # raster order
    assert torch.equal(out[0], expected) and len(calls) == int(todo.sum())


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
