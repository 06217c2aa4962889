"""The sliding window's per-window condition encoding, batched: all window crops through the condition stage at
once (WindowedCondition.prepare, which sample_sliding calls first, sharing the stage's first convolution between
overlapping crops: VQGAN.encode_crops_to_indices) give the same condition tokens as encoding one window at a time,
on the bundled landscapes model and its held-out maps."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

import vqforge
from vqforge.sampling.pipeline import condition_tokens, layout
from vqforge.sampling.sliding import WindowedCondition, _cond_span, check_windows, window_starts

ASSETS = Path(vqforge.__file__).parent / "demo_assets" / "segmentations"


def test_batched_window_encoding_equals_one_window_at_a_time():
    model = vqforge.load("landscapes").eval()
    lay = layout(model, (128, 256))  # 4x the trained 64 px in width: a sliding window over an 8 x 16 grid
    maps = sorted(ASSETS.iterdir())  # the demo's held-out maps
    c = torch.cat([model.condition.read_condition(p, lay.image_hw)[0] for p in maps])  # (B, ...) model inputs
    B = c.shape[0]
    with torch.inference_mode():
        lazy, _ = condition_tokens(model, lay, B, c)
        batched, _ = condition_tokens(model, lay, B, c)
        assert isinstance(lazy, WindowedCondition) and lay.sliding
        (h, w), (wh, ww), (ch, cw) = lay.grid_hw, lay.window_hw, lazy.shape[1:]
        align = check_windows(lay.grid_hw, lay.window_hw, (ch, cw))
        keys = [(_cond_span(i0, i0 + wh, h, ch), _cond_span(j0, j0 + ww, w, cw))
                for i0, j0 in window_starts(lay.grid_hw, lay.window_hw, align)]
        assert len(keys) > 10
        calls, batches = [], []
        encode, encode_crops, trunk = batched.encode, batched.encode_crops, model.cond_stage.encoder.trunk
        batched.encode = lambda x: calls.append(x.shape[0]) or encode(x)
        batched.encode_crops = lambda x, boxes, chunk: calls.append(len(boxes)) or encode_crops(x, boxes, chunk)
        model.cond_stage.encoder.trunk = lambda h: batches.append(h.shape[0]) or trunk(h)
        try:
            batched.prepare(keys, chunk=8)
        finally:
            del model.cond_stage.encoder.trunk
        assert calls == [len(keys)]  # one call for all the windows (of one size)
        assert max(batches) == 8 * B and len(batches) == -(-len(keys) // 8)  # 8 windows x B maps per batch
        for key in keys:
            assert torch.equal(batched.window(*key), lazy.window(*key)), key  # lazy: the crop through the stage
        assert calls == [len(keys)]  # nothing encoded again


def test_crop_stems_equal_each_crop_convolved_alone():
    """Encoder.crop_stems (the whole input's first convolution, each crop's rim convolved again) against
    conv_in of each crop alone, zero-padded at its own edges: equal within the reordering error of fp32 sums,
    |err| <= gamma_n * (|W| * |x| + |b|) with n the terms of a sum (9 taps + bias for a one-hot input); crops at
    the input's edges, inside it, and overlapping, with B = 2."""
    model = vqforge.load("landscapes").eval()
    enc = model.cond_stage.encoder
    conv = enc.conv_in
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, conv.in_channels, (2, 40, 56), generator=g)
    x = F.one_hot(labels, conv.in_channels).permute(0, 3, 1, 2).float()  # (2, 182, 40, 56), channels-last
    boxes = [(0, 16, 0, 24), (8, 24, 16, 40), (24, 40, 32, 56), (16, 32, 0, 24), (8, 24, 8, 32)]
    with torch.inference_mode():
        got = enc.crop_stems(x, conv(x).contiguous(memory_format=torch.channels_last), boxes)  # (10, ch, 16, 24)
        crops = torch.cat([x[..., a:b, c:d] for a, b, c, d in boxes])
        want = conv(crops)
        bound = F.conv2d(crops, conv.weight.abs(), conv.bias.abs(), padding=1)  # |W| * |x| + |b|
    gamma = 10 * torch.finfo(torch.float32).eps / (1 - 10 * torch.finfo(torch.float32).eps)
    assert got.shape == want.shape == (10, conv.out_channels, 16, 24)
    assert ((got - want).abs() <= 2 * gamma * bound).all()  # two roundings' worth: each side reorders its sum
    # an inner crop's rim is not the whole input's convolution there (it sees the crop's own padding)
    whole = conv(x)[..., 8:24, 16:40]  # (2, ch, 16, 24): box 1, rows 2:4 of the crops (box-major)
    assert not torch.allclose(got[2:4, :, 0], whole[:, :, 0], atol=1e-3)
