"""bf16 autocast training (fp32 master weights, fp32 losses) learns as fp32 does: the tiny configs trained
over the same steps in both precisions reach validation losses within a stated margin of each other."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vqforge.data.tokens import write_tokens
from vqforge.devices import cpu_bf16_supported

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "assets" / "photos"
VQ = ROOT / "tests" / "fixtures" / "fashion_vqgan"

pytestmark = [
    pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bf16 (AVX512-BF16 / AMX)"),
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.slow,
]


def _val(run: Path, key: str) -> dict[int, float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {m["step"]: m[key] for m in lines if key in m}


def test_vqgan_tiny_learns_in_bf16_as_in_fp32(tmp_path):
    from vqforge.train.vqgan import load_config, train_vqgan

    steps = 40
    runs = {}
    for precision in ("fp32", "bf16"):
        cfg = load_config(ROOT / "configs" / "vqgan_tiny.yaml",
                          ["train.device=cpu", f"train.precision={precision}", "train.val_every=20",
                           "train.preview_every=0", "train.checkpoint_every=0"])
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, data=str(PHOTOS)))
        train_vqgan(cfg, tmp_path / precision, max_steps=steps, quiet=True)
        runs[precision] = _val(tmp_path / precision, "val/l1")
    print("val L1 by step: " + "; ".join(f"{p} {v}" for p, v in runs.items()))
    for precision, val in runs.items():
        assert val[steps] < 0.7 * val[0], (precision, val)  # both learn
    assert abs(runs["bf16"][steps] - runs["fp32"][steps]) < 0.15 * runs["fp32"][steps]


def test_transformer_tiny_learns_in_bf16_as_in_fp32(tmp_path):
    from vqforge.train.transformer import load_config, train_transformer

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    z = (rng.integers(0, 64, (400, 1)) + np.arange(16)[None] * (labels[:, None] + 1)) % 64  # learnable rows
    data = write_tokens(tmp_path / "tok", z, (4, 4), 64, (16, 16), labels=labels, label_names=["a", "b", "c"])
    steps = 40
    runs = {}
    for precision in ("fp32", "bf16"):
        cfg = load_config(ROOT / "configs" / "transformer_tiny_class.yaml",
                              ["model.cond.n_classes=3", "train.batch_size=32", "train.warmup_steps=10",
                               "train.val_every=20", "train.checkpoint_every=0", f"train.precision={precision}"])
        train_transformer(cfg, str(data), tmp_path / precision, first_stage=str(VQ), max_steps=steps, quiet=True)
        runs[precision] = _val(tmp_path / precision, "val/loss")
    print("val loss by step: " + "; ".join(f"{p} {v}" for p, v in runs.items()))
    chance = float(np.log(64))
    for precision, val in runs.items():
        assert val[0] > 0.9 * chance and val[steps] < 0.5 * chance, (precision, val)
    assert abs(runs["bf16"][steps] - runs["fp32"][steps]) < 0.1 * chance
