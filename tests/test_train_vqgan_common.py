"""The generic training pieces (vqforge.train: stream, checkpoint, numerics, console) and the metrics the VQGAN
trainer logs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from vqforge.imageio import save_grid
from vqforge.io import load_torch
from vqforge.metrics import psnr, ssim
from vqforge.train.checkpoint import Checkpoint, RunDir
from vqforge.train.console import MetricLogger
from vqforge.train.distributed import DistInfo
from vqforge.train.numerics import EMA
from vqforge.train.stream import BatchStream, ResumableSampler, gather_rng_states, seed_everything, set_rng_state


def test_sampler_ranks_are_disjoint_and_epochs_differ():
    shares = [list(ResumableSampler(10, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 3 for s in shares)  # drop_last: 9 of 10
    assert len(set(sum(shares, []))) == 9
    s = ResumableSampler(10, seed=3)
    e0 = list(s)
    s.set_epoch(1)
    assert sorted(list(s)) == sorted(e0) and list(s) != e0
    s.set_start(4)
    assert list(s) == _epoch(10, 3, 1)[4:]


def _epoch(n, seed, epoch):
    s = ResumableSampler(n, seed=seed)
    s.set_epoch(epoch)
    return list(s)


def test_batch_stream_resumes_at_the_next_batch():
    data = torch.arange(11)
    full = BatchStream(data, 3, ResumableSampler(11, seed=1))
    expected = [next(full).tolist() for _ in range(8)]  # crosses two epoch boundaries (3 batches/epoch)
    first = BatchStream(data, 3, ResumableSampler(11, seed=1))
    got = [next(first).tolist() for _ in range(4)]
    again = BatchStream(data, 3, ResumableSampler(11, seed=1))
    again.load_state_dict(first.state_dict())
    got += [next(again).tolist() for _ in range(4)]
    assert got == expected


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    seed_everything(5)
    run = RunDir(tmp_path / "run")
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters())
    ckpt = Checkpoint("vqgan", "vqgan", {"a": 1}, model.state_dict(), 7, {"b": 2},
                             {"opt": opt.state_dict()}, rng=gather_rng_states(DistInfo()),
                             data={"epoch": 0, "batch": 1})
    run.save(ckpt, keep=True)
    want = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    loaded = load_torch(run.last)  # weights_only: every entry must be plain data or tensors
    assert (run.checkpoint_dir / "step_0000007.pt").is_file() and loaded["step"] == 7
    set_rng_state(loaded["rng"][0])
    got = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and want[2] == got[2]


def test_ema_tracks_and_loads():
    model = torch.nn.Linear(3, 1)
    ema = EMA(model, decay=0.5)
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update(model)
    assert torch.allclose(ema.state_dict()["weight"], before + 1.0)
    fresh = torch.nn.Linear(3, 1)
    fresh.load_state_dict(ema.state_dict())
    assert torch.allclose(fresh.weight, before + 1.0)


def test_grid_layout_and_values(tmp_path):
    images = torch.stack([torch.full((3, 4, 4), v) for v in (-1.0, 0.0, 1.0)])
    path = save_grid(tmp_path / "g.png", images, nrow=2)
    arr = np.asarray(Image.open(path))
    assert arr.shape == (2 * 6 + 2, 2 * 6 + 2, 3)
    assert arr[2, 2, 0] == 0 and arr[2, 8, 0] == 128 and arr[8, 2, 0] == 255


def test_metric_logger_writes_jsonl(tmp_path):
    log = MetricLogger(tmp_path, enabled=True)
    log.log(1, {"a": torch.tensor(0.5), "b": 2})
    log.close()
    assert (tmp_path / "metrics.jsonl").read_text().strip() == '{"step": 1, "a": 0.5, "b": 2.0}'
    MetricLogger(tmp_path / "off", enabled=False).log(1, {"a": 1})
    assert not (tmp_path / "off").exists()


def test_lr_rule():
    from vqforge.train.settings import TrainSettings, resolve_lr

    s = TrainSettings(base_learning_rate=4.5e-6, batch_size=12, accumulation=2)
    assert resolve_lr(s, world_size=8) == pytest.approx(4.5e-6 * 192)
    assert resolve_lr(TrainSettings(learning_rate=1e-3, batch_size=12), world_size=8) == 1e-3


def test_psnr_and_ssim_known_values():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2))
    y = x + 0.1  # MSE 0.01 on a range of 2 -> 10 log10(4 / 0.01) = 26.02 dB
    assert torch.allclose(psnr(x, y), torch.full((2,), 10 * np.log10(400.0)), atol=1e-3)
    noisy = (x + 0.5 * torch.randn_like(x)).clamp(-1, 1)
    s = ssim(x, noisy)
    assert (s < 0.9).all() and (s > -1).all()
    # constant images: SSIM is the luminance term (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1) on [0, 1]
    # intensities: 0.2 and -0.2 in [-1, 1] are 0.6 and 0.4
    a, b = torch.full((1, 1, 16, 16), 0.2), torch.full((1, 1, 16, 16), -0.2)
    c1 = 0.01**2
    assert torch.allclose(ssim(a, b), torch.tensor([(2 * 0.6 * 0.4 + c1) / (0.36 + 0.16 + c1)]), atol=1e-4)


def test_metric_logger_without_tensorboard_degrades_to_jsonl(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.warns(UserWarning, match="tensorboard unavailable"):
        log = MetricLogger(tmp_path, enabled=True)
    log.log(3, {"x": 1.5})
    log.close()
    assert not (tmp_path / "tb").exists()
    assert (tmp_path / "metrics.jsonl").read_text().strip() == '{"step": 3, "x": 1.5}'


def test_metric_logger_writes_tensorboard_events(tmp_path):
    log = MetricLogger(tmp_path, enabled=True)
    log.log(1, {"x": 1.0})
    log.close()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
