"""End to end on Fashion-MNIST (Debian's dataset-fashion-mnist): `vqforge encode`, `vqforge train transformer`
with class conditioning, then class-conditional samples that a nearest-class-mean classifier recognises.

The first stage is the tiny 16 px f4 VQGAN in tests/fixtures/fashion_vqgan (64 codes, 4 x 4 tokens; made by
tests/fixtures/make_fashion_vqgan.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vqforge
from vqforge.data.fashion_mnist import available, load_fashion_mnist, to_model_images
from vqforge.data.tokens import TokenDataset, unigram_entropy
from vqforge.train.transformer import load_config, sample_tokens, train_transformer

# NOTE: one list; a second `pytestmark =` assignment would silently drop the skip marker.
pytestmark = [
    pytest.mark.skipif(not available(), reason="Fashion-MNIST not installed (Debian package "
                                               "dataset-fashion-mnist, or set VQFORGE_FASHION_MNIST)"),
    pytest.mark.usefixtures("one_thread"),
]
REPO = Path(__file__).resolve().parents[1]
VQ = REPO / "tests" / "fixtures" / "fashion_vqgan"
CONFIG = REPO / "configs" / "transformer_tiny_class.yaml"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "vqforge", *args], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fm") / "tokens"
    _cli("encode", "--model", str(VQ), "--data", "fashion-mnist", "--size", "16", "--limit", "4000",
         "--out", str(out), "--quiet")
    return out


def test_token_dataset_format(tokens):
    ds = TokenDataset(tokens)
    meta = json.loads((tokens / "meta.json").read_text())
    assert meta["n"] == 4000 and meta["grid"] == [4, 4] and meta["n_codes"] == 64 and meta["image_size"] == [16, 16]
    assert meta["label_names"][0] == "t-shirt" and len(meta["label_names"]) == 10
    item = ds[5]
    assert item["tokens"].shape == (16,) and item["tokens"].dtype == torch.int64 and 0 <= int(item["label"]) < 10
    _, labels = load_fashion_mnist("train")
    assert int(item["label"]) == int(labels[5])


def test_class_conditional_fashion_mnist(tokens, tmp_path):
    run = tmp_path / "run"
    r = _cli("train", "transformer", "--config", str(CONFIG), "--data", str(tokens), "--first-stage", str(VQ),
             "--out", str(run), "--max-steps", "300", "--quiet", "--json",
             "train.learning_rate=0.002", "train.warmup_steps=20", "train.val_every=300",
             "train.preview_every=300")
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    h = unigram_entropy(TokenDataset(tokens).tokens, 64)
    print(f"val loss {metrics['val/loss']:.3f} nats/token vs unigram entropy {h:.3f}; "
          f"val {metrics['val/bits_per_dim']:.3f} bits/dim")
    assert metrics["step"] == 300
    assert (run / "images" / "samples_0000300.png").is_file() and (run / "tb").is_dir()
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "config.yaml").is_file()
    assert metrics["val/loss"] < h - 1.0  # well below what a context-free model can reach

    model = vqforge.load(run)
    assert model.null_token == 10 and model.trained_hw == (16, 16)
    images, labels = load_fashion_mnist("test")
    x, y = to_model_images(images[:2000], 16), torch.from_numpy(labels[:2000])
    means = torch.stack([x[y == k].mean(0) for k in range(10)]).flatten(1)  # (10, 256) class means

    def classify(im):
        return torch.cdist(im.flatten(1), means).argmin(1)

    real_acc = (classify(x) == y).float().mean().item()
    torch.manual_seed(0)
    want = torch.arange(10).repeat_interleave(20)
    idx = sample_tokens(model, model.encode_to_c(want), 16, top_k=None)
    samples = model.decode_to_img(idx, (4, 4))
    acc = (classify(samples) == want).float().mean().item()
    print(f"class-conditional samples classified as requested: {acc:.3f} (chance 0.100; "
          f"the same classifier on real test images: {real_acc:.3f})")
    assert acc > 0.45


def test_resume_is_exact(tokens, tmp_path):
    cfg = load_config(CONFIG, ["train.val_every=0", "train.checkpoint_every=0", "model.gpt.n_embd=32",
                                   "train.batch_size=16", "model.pkeep=0.9"])
    first = train_transformer(cfg, str(tokens), tmp_path / "a", first_stage=str(VQ), max_steps=12, stop_after=6, quiet=True)
    assert first.step == 6
    train_transformer(None, None, tmp_path / "a", resume=True, quiet=True)
    train_transformer(cfg, str(tokens), tmp_path / "b", first_stage=str(VQ), max_steps=12, quiet=True)
    a, b = vqforge.load(tmp_path / "a"), vqforge.load(tmp_path / "b")
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], atol=0, rtol=0, msg=k)


def test_on_the_fly_encoding_and_resume_from_run_dir(tmp_path):
    """Training straight from images (encoded on the fly), then `--resume RUN_DIR` without --data."""
    run = tmp_path / "run"
    _cli("train", "transformer", "--config", str(CONFIG), "--data", "fashion-mnist", "--first-stage", str(VQ),
         "--out", str(run), "--max-steps", "3", "--quiet", "train.val_batches=1", "train.batch_size=8",
         "model.gpt.n_embd=32")
    r = _cli("train", "transformer", "--resume", str(run), "--max-steps", "5", "--quiet", "--json")
    assert json.loads(r.stdout.strip().splitlines()[-1])["step"] == 5
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 5
