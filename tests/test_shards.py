"""Webdataset tar shards: `vqforge shard` writes them; trainers and `encode` read brace patterns of them, split by
rank and worker, shuffled through a buffer, every sample once per epoch, and resume at the next sample."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

wds = pytest.importorskip("webdataset", reason="tar shards need the optional webdataset (pip install "
                                               "'vqforge[shards]')")

from vqforge.cli import main  # noqa: E402
from vqforge.data.shards import (DecodeImage, ShardStream, decode_tokens, expand, read_index,  # noqa: E402
                                 read_samples)
from vqforge.io import VQForgeError  # noqa: E402
from vqforge.train.stream import ShardBatchStream  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "vqgan_tiny.yaml"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """26 small photos in two class folders, with a segmentation map each under maps/."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(26):
        cls = "cats" if i % 2 else "dogs"
        (root / "photos" / cls).mkdir(parents=True, exist_ok=True)
        (root / "maps" / cls).mkdir(parents=True, exist_ok=True)
        photo = Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
        photo.save(root / "photos" / cls / f"im{i:02d}.png")
        Image.fromarray(rng.integers(0, 5, (20, 24), dtype=np.uint8)).save(root / "maps" / cls / f"im{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def shards(images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sh") / "shards"
    assert main(["shard", "--data", str(images / "photos"), "--out", str(out), "--per-shard", "4", "--labels",
                 "folders", "--maps", str(images / "maps"), "--val-fraction", "0.08"]) == 0
    return out


def train_keys(shards: Path) -> set[str]:
    return {f"{s['name']}/{k}" for s in read_index(shards)["train"]
            for k in {m.split(".")[0] for m in tarfile.open(shards / s["name"]).getnames()}}


def test_shard_writes_webdataset_tars_with_an_index(images, shards, tmp_path):
    index = read_index(shards)
    assert [s["samples"] for s in index["train"]] == [4] * 6 and [s["samples"] for s in index["val"]] == [2]
    assert index["label_names"] == ["cats", "dogs"] and index["pattern"] == "shard-{000000..000005}.tar"
    # webdataset's own reader: a sample's members together, the photo's bytes unchanged, its class and map
    samples = list(read_samples(expand(str(shards / index["pattern"]))))
    assert len(samples) == 24 and len(train_keys(shards)) == 24
    s = samples[0]
    src = Path(s["src.txt"].decode())
    assert s["png"] == src.read_bytes() and int(s["cls"]) == ["cats", "dogs"].index(src.parent.name)
    assert s["map.png"] == (images / "maps" / src.parent.name / src.name).read_bytes()
    assert expand(shards) == expand(str(shards / index["pattern"]))  # the folder means its training shards
    # an output that is not a shard folder is refused; a missing shard is one line naming it
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("x")
    with pytest.raises(VQForgeError, match="not a shard folder"):
        from vqforge.data.shard_writer import shard_dataset

        shard_dataset(str(images / "photos"), tmp_path / "taken")
    with pytest.raises(VQForgeError, match=r"shard-000006.tar: no such shard \(4 of the 10"):
        expand(str(shards / "shard-{000000..000009}.tar"))


def epoch_keys(stream: ShardStream, epoch: int, workers: int) -> list[str]:
    stream.set_epoch(epoch)
    stream.set_skip([])
    loader = torch.utils.data.DataLoader(stream, batch_size=3, num_workers=workers)
    return [k for batch in loader for k in batch["__key__"]]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_sample_once_per_epoch_across_ranks_and_workers(shards, workers):
    files = expand(shards)
    decode = DecodeImage(16, labels=True)
    ranks = [ShardStream(files, decode, seed=3, rank=r, world_size=2, buffer=5) for r in range(2)]
    everything = train_keys(shards)
    orders = []
    for epoch in range(2):
        seen = [epoch_keys(s, epoch, workers) for s in ranks]
        assert len(seen[0]) == len(seen[1]) == 12  # 3 shards of 4 each
        assert sorted(seen[0] + seen[1]) == sorted(everything)  # each sample exactly once
        orders.append(seen[0])
    assert orders[0] != orders[1]  # a new shard order and buffer shuffle each epoch
    assert epoch_keys(ranks[0], 0, workers) == epoch_keys(ranks[0], 0, workers)  # a pure function of the seed


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_stream_goes_on_at_the_next_sample(shards, workers):
    files = expand(shards)

    def stream():
        return ShardBatchStream(ShardStream(files, DecodeImage(16), seed=1, buffer=4), batch_size=3, workers=workers)

    ref = stream()
    ref_keys = [next(ref) and list(ref.last_keys) for _ in range(12)]  # 36 samples: one epoch and a half
    a = stream()
    for _ in range(5):
        next(a)
    state = json.loads(json.dumps(a.state_dict()))  # what a checkpoint keeps
    b = stream()
    b.load_state_dict(state)
    rest = [next(b) and list(b.last_keys) for _ in range(7)]
    flat = lambda batches: [k for ks in batches for k in ks]  # noqa: E731
    if workers == 0:
        assert rest == ref_keys[5:]  # exactly the batches an uninterrupted run reads next
    else:  # each worker goes on at its own next sample; the epoch's samples are the same
        assert sorted(flat(rest[:3])) == sorted(flat(ref_keys[5:8]))
    assert sorted(flat(ref_keys[:5]) + flat(rest[:3])) == sorted(train_keys(shards))  # epoch 0: each once


def test_token_shards_and_encode_from_shards(shards, tmp_path):
    """encode reads image shards (classes from them), the token dataset shards too, and the transformer trains on
    token shards and on image shards."""
    import vqforge
    from vqforge.data.tokens import TokenDataset
    from vqforge.models.conditioning import ClassConfig
    from vqforge.models.gpt import GPTConfig
    from vqforge.models.transformer import TransformerConfig
    from vqforge.models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
    from vqforge.quantizers import VQConfig
    from vqforge.train.transformer import TransformerRunConfig, TransformerSettings, train_transformer

    torch.manual_seed(0)
    vq = VQGAN(VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 1), num_res_blocks=0, attn_resolutions=(),
                                             in_channels=3, out_ch=3, resolution=16, z_channels=8),
                           VQConfig(n_embed=32, embed_dim=8)))
    vqforge.save_model(vq, tmp_path / "vq")
    assert main(["encode", "--model", str(tmp_path / "vq"), "--data", str(shards / "shard-{000000..000005}.tar"),
                 "--labels", "shards", "--size", "16", "--out", str(tmp_path / "tok"), "--quiet"]) == 0
    tok = TokenDataset(tmp_path / "tok")
    assert len(tok) == 24 and tok.label_names == ["cats", "dogs"] and tok.grid == (8, 8)
    assert sorted(int(tok[i]["label"]) for i in range(24)) == [0] * 12 + [1] * 12
    assert main(["shard", "--data", str(tmp_path / "tok"), "--out", str(tmp_path / "tokshards"), "--per-shard", "5",
                 "--val-fraction", "0.2"]) == 0
    raw = next(read_samples(expand(tmp_path / "tokshards")))
    assert decode_tokens(raw, None)["tokens"].shape == (64,)

    cfg = TransformerRunConfig(
        model=TransformerConfig(gpt=GPTConfig(vocab_size=34, block_size=65, n_layer=1, n_head=2, n_embd=16),
                                cond=ClassConfig(n_classes=2)),
        train=TransformerSettings(batch_size=4, learning_rate=1e-3, image_size=16, val_every=2, preview_every=0,
                                     checkpoint_every=0))
    for data, run in ((tmp_path / "tokshards" / "shard-{000000..000003}.tar", "run_tok"), (shards, "run_img")):
        result = train_transformer(cfg, str(data), tmp_path / run, first_stage=str(tmp_path / "vq"), max_steps=2, quiet=True)
        assert result.step == 2
        ckpt = torch.load(tmp_path / run / "checkpoints" / "last.pt", weights_only=True)
        assert ckpt["label_names"] == ["cats", "dogs"] and "shards" in ckpt["data"]


def _torchrun(run: Path, shards: Path, *extra: str, max_steps: int, resume: bool = False) -> list[str]:
    with socket.socket() as sock:  # a free port, so parallel test runs do not collide
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    pattern = str(shards / "shard-{000000..000005}.tar")
    where = ["--resume", str(run)] if resume else ["--config", str(TINY), "--data", pattern, "--out", str(run)]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
            "-m", "vqforge", "train", "vqgan", *where, "--max-steps", str(max_steps), "--quiet", "--device", "cpu",
            *([] if resume else ["train.batch_size=4", "train.image_size=16", "model.ddconfig.resolution=16",
                                 "loss.disc_start=0", "train.val_every=0", "train.preview_every=0",
                                 "train.checkpoint_every=2", "train.keep_every=0", "train.shuffle_buffer=3"]),
            *extra]


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _seen(run: Path, rank: int) -> list[tuple[int, list[str]]]:
    lines = (run / "debug" / f"samples_rank{rank}.jsonl").read_text().splitlines()
    return [(r["step"], r["keys"]) for r in map(json.loads, lines)]


@pytest.mark.slow
def test_torchrun_two_processes_see_every_sample_once_per_epoch_and_resume_after_a_kill(shards, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "VQFORGE_DEBUG_SAMPLES": "1"}
    everything = train_keys(shards)
    ref = tmp_path / "ref"  # uninterrupted: two epochs of 3 steps (2 ranks x 3 shards x 4 samples / batch 4)
    r = subprocess.run(_torchrun(ref, shards, max_steps=8), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = [_seen(ref, rank) for rank in (0, 1)]
    for epoch in range(2):
        keys = [k for rank in (0, 1) for step, ks in seen[rank] if 3 * epoch <= step < 3 * epoch + 3 for k in ks]
        assert sorted(keys) == sorted(everything), f"epoch {epoch}: every sample once across both processes"

    killed = tmp_path / "killed"  # the same run, killed (SIGKILL) mid-epoch after a checkpoint
    proc = subprocess.Popen(_torchrun(killed, shards, max_steps=1000), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = killed / "debug" / "samples_rank0.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (log.is_file() and log.read_text().count("\n") >= 4):
        time.sleep(0.05)
    workers = _descendants(proc.pid)  # torchrun starts its workers in sessions of their own
    for pid in [*workers, proc.pid]:
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.05)
    saved = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert 2 <= saved < 8
    r = subprocess.run(_torchrun(killed, shards, max_steps=8, resume=True), env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for rank in (0, 1):
        resumed = _seen(killed, rank)[-(8 - saved):]  # the lines the resumed run wrote
        assert resumed == [(s, ks) for s, ks in _seen(ref, rank) if s >= saved], \
            f"rank {rank}: resumed from step {saved} at the next sample, as the uninterrupted run read it"


def test_a_condition_stage_trains_on_shards_of_its_maps(tmp_path):
    """`vqforge shard` of a folder of depth maps (the D-RIN float32-in-RGBA PNGs); `train condition` streams them."""
    from vqforge.models.vqgan import AutoencoderConfig, VQGANConfig
    from vqforge.quantizers import VQConfig
    from vqforge.train.condition import ConditionRunConfig, ConditionSettings, train_condition

    rng = np.random.default_rng(0)
    (tmp_path / "depth").mkdir()
    for i in range(8):
        d = rng.uniform(1.0, 20.0, (24, 24)).astype("<f4")
        Image.fromarray(np.ascontiguousarray(d).view(np.uint8).reshape(24, 24, 4), "RGBA").save(
            tmp_path / "depth" / f"scene{i}.png")
    assert main(["shard", "--data", str(tmp_path / "depth"), "--out", str(tmp_path / "sh"), "--per-shard", "2"]) == 0
    stage = VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=0, attn_resolutions=(), in_channels=1,
                                          out_ch=1, resolution=16, z_channels=8), VQConfig(n_embed=16, embed_dim=8))
    cfg = ConditionRunConfig(mode="depth", model=stage, train=ConditionSettings(
        data=str(tmp_path / "sh" / "shard-{000000..000003}.tar"), image_size=16, batch_size=2, val_every=2,
        preview_every=0, checkpoint_every=0, precision="fp32"))
    result = train_condition(cfg, tmp_path / "run", max_steps=2, quiet=True)
    assert result.step == 2
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["data"]["shards"][0]["consumed"] == [4]  # two batches of two maps read from the stream
