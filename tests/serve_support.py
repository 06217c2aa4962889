"""Tiny random-weight models and a real `vqforge serve` process for the web app's tests."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from vqforge.api import save_model
from vqforge.models.conditioning import ClassConfig, SegmentationConfig
from vqforge.models.transformer import GPTConfig, Net2NetTransformer, TransformerConfig
from vqforge.models.vqgan import VQGAN

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from serve_load import Server  # noqa: E402,F401  (the server process the load benchmark drives, too)
from test_sampling import tiny_net, tiny_vq  # noqa: E402

CLASS_NAMES = ["tee", "trouser", "pullover", "dress", "coat"]
LABEL_NAMES = ["sky", "tree", "grass", "water", "rock"]


def build_models(root: Path) -> dict[str, Path]:
    """A class model with a NULL class (f4, trained at 16 px), a segmentation model (5 labels), a bare VQGAN, and
    a class model on grayscale images (as the bundled ``fashion``)."""
    names = ("tinyclass", "tinyseg", "tinyvq", "tinygray")
    paths = {name: root / name for name in names}
    classes = ClassConfig(n_classes=5, null_class=True, names=tuple(CLASS_NAMES))
    save_model(tiny_net(classes), paths["tinyclass"], extra={"sampling": {"top_k": 20, "cfg_scale": 1.5}})
    seg = SegmentationConfig(n_labels=5, cond_stage=tiny_vq(5, ch_mult=(1, 2, 2)))
    save_model(tiny_net(seg, seed=1), paths["tinyseg"], extra={"label_names": LABEL_NAMES, "common_labels": [3, 1, 9, 3]})
    save_model(VQGAN(tiny_vq()).eval(), paths["tinyvq"])
    torch.manual_seed(2)
    gpt = GPTConfig(vocab_size=64, block_size=96, n_layer=2, n_head=2, n_embd=32)
    gray = tiny_vq(1)
    gray = replace(gray, ddconfig=replace(gray.ddconfig, out_ch=1))
    save_model(Net2NetTransformer(TransformerConfig(gpt=gpt, first_stage=gray, cond=classes)).eval(),
               paths["tinygray"], extra={"sampling": {"cfg": 3.0, "temperature": 0.9, "top_k": True, "seed": 4},
                                          "max_scale": 2, "max_scale_why": "trained on whole 16x16 images"})
    return paths


def wait_done(client, job_id: str, timeout: float = 120.0) -> dict:
    """Poll a job until it finishes; its last snapshot."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = client.get(f"/api/jobs/{job_id}").json()
        if snap["state"] in ("done", "error", "cancelled"):
            return snap
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} still {snap['state']} after {timeout} s")

