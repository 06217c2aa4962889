"""The sampling progress hook: counts, the partial token grid it shows, and cancellation by raising."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from vqforge.sampling import SamplingSettings, complete_image, condition_tokens, layout, sample_images

sys.path.insert(0, str(Path(__file__).parent))
from test_sampling import MODES, tiny_net  # noqa: E402


class Stop(Exception):
    pass


class Recorder:
    """Keeps (done, total, copy of the tokens) of every call; raises after ``stop_after`` calls."""

    def __init__(self, stop_after: int | None = None):
        self.calls, self.stop_after = [], stop_after

    def __call__(self, done, total, tokens):
        self.calls.append((done, total, tokens.clone()))
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise Stop("stop")


@pytest.mark.parametrize("size", [(16, 16), (24, 32)], ids=["plain", "sliding"])
def test_progress_counts_every_token_and_shows_the_grid_filling_in_raster_order(size, one_thread):
    m = tiny_net(MODES["class"])
    lay = layout(m, size)
    assert lay.sliding == (size != (16, 16))
    cond, _ = condition_tokens(m, lay, 2, classes=torch.tensor([1, 3]))
    rec = Recorder()
    _, z = sample_images(m, lay, cond, SamplingSettings(top_k=10), torch.Generator().manual_seed(0), callback=rec)
    h, w = lay.grid_hw
    assert [(d, t) for d, t, _ in rec.calls] == [(k, h * w) for k in range(1, h * w + 1)]
    for done, _, tokens in rec.calls[:: max(1, len(rec.calls) // 7)]:
        assert tokens.shape == (2, h, w)
        assert torch.equal(tokens.flatten(1)[:, :done], z.flatten(1)[:, :done])  # the first `done` are final


def test_raising_from_progress_stops_sampling_and_propagates(one_thread):
    m = tiny_net(MODES["class"])
    lay = layout(m, (24, 24))
    cond, _ = condition_tokens(m, lay, 1, classes=torch.tensor([2]))
    rec = Recorder(stop_after=5)
    with pytest.raises(Stop, match="stop"):
        sample_images(m, lay, cond, SamplingSettings(), torch.Generator().manual_seed(0), callback=rec)
    assert len(rec.calls) == 5


def test_completion_progress_counts_masked_tokens_only(one_thread):
    m = tiny_net(MODES["class"])
    lay = layout(m, (16, 24))
    image = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mask = torch.zeros(16, 24, dtype=torch.bool)
    mask[4:12, 0:8] = True  # 2x2 tokens of a f4 grid
    cond, _ = condition_tokens(m, lay, 1, classes=torch.tensor([0]))
    rec = Recorder()
    _, z, tmask = complete_image(m, image, mask, cond, lay, SamplingSettings(), torch.Generator().manual_seed(1),
                                 callback=rec)
    assert int(tmask.sum()) == 4 and [(d, t) for d, t, _ in rec.calls] == [(k, 4) for k in range(1, 5)]
    assert torch.equal(rec.calls[-1][2], z)
