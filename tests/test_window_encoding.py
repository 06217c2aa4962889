"""The sliding window's per-window condition encoding, batched: all window crops through the condition stage at
once (WindowedCondition.prepare, which sample_sliding calls first) give the same condition tokens as encoding one
window at a time, on the bundled landscapes model and a real map."""

from __future__ import annotations

from pathlib import Path

import torch

import vqforge
from vqforge.sampling.pipeline import condition_tokens, layout
from vqforge.sampling.sliding import WindowedCondition, _cond_span, check_windows, window_starts

ASSETS = Path(vqforge.__file__).parent / "demo_assets" / "segmentations"


def test_batched_window_encoding_equals_one_window_at_a_time():
    model = vqforge.load("landscapes").eval()
    lay = layout(model, (128, 256))  # 4x the trained 64 px in width: a sliding window over an 8 x 16 grid
    maps = sorted(ASSETS.iterdir())[:2]
    c = torch.cat([model.condition.read_condition(p, lay.image_hw)[0] for p in maps])  # (2, ...) model inputs
    with torch.inference_mode():
        lazy, _ = condition_tokens(model, lay, 2, c)
        batched, _ = condition_tokens(model, lay, 2, c)
        assert isinstance(lazy, WindowedCondition) and lay.sliding
        (h, w), (wh, ww), (ch, cw) = lay.grid_hw, lay.window_hw, lazy.shape[1:]
        align = check_windows(lay.grid_hw, lay.window_hw, (ch, cw))
        keys = [(_cond_span(i0, i0 + wh, h, ch), _cond_span(j0, j0 + ww, w, cw))
                for i0, j0 in window_starts(lay.grid_hw, lay.window_hw, align)]
        assert len(keys) > 10
        calls = []
        encode = batched.encode
        batched.encode = lambda x: calls.append(x.shape[0]) or encode(x)
        batched.prepare(keys, chunk=8)
        assert calls and max(calls) == 16 and len(calls) == -(-len(keys) // 8)  # 8 windows x 2 maps per call
        for key in keys:
            assert torch.equal(batched.window(*key), lazy.window(*key)), key
        assert len(calls) == -(-len(keys) // 8)  # nothing encoded again
