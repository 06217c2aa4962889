"""Every condition mode trains from raw images (encoded on the fly) and from `vqforge encode` tokens:
class labels from ImageFolder sub-folders, edges (Canny) and low-resolution conditions computed from the
photos, coordinates, unconditional. One or two steps each on 32 px photos with random tiny stages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import nearest_codes

import vqforge
from vqforge.models.conditioning import (ClassConfig, CoordConfig, EdgesConfig, LowresConfig, UnconditionalConfig)
from vqforge.models.gpt import GPTConfig
from vqforge.models.transformer import TransformerConfig
from vqforge.models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
from vqforge.quantizers import VQConfig
from vqforge.train.transformer import TransformerRunConfig, TransformerSettings, train_transformer

PHOTOS = Path(__file__).resolve().parent / "fixtures" / "sflckr_photos"  # 3 scene folders, 4 photos


pytestmark = pytest.mark.usefixtures("one_thread")


def _vq(in_ch: int, n_embed: int) -> VQGANConfig:
    return VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 1, 1), num_res_blocks=0, attn_resolutions=(),
                                         in_channels=in_ch, out_ch=in_ch, resolution=32, z_channels=8),
                       VQConfig(n_embed=n_embed, embed_dim=8))


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    d = tmp_path_factory.mktemp("stages")
    torch.manual_seed(0)
    vqforge.save_model(VQGAN(_vq(3, 64)), d / "vq")
    vqforge.save_model(VQGAN(_vq(1, 32)), d / "edges")
    vqforge.save_model(VQGAN(_vq(3, 32)), d / "lowres")
    return d


def _fed_to_the_gpt(run):
    """Call ``run()`` and return the token rows (B, T) that the GPT saw in training mode (a forward pre-hook)."""
    from vqforge.models.gpt import GPT

    rows = []

    def hook(module, args):
        if isinstance(module, GPT) and module.training:
            rows.append(args[0].detach().cpu().clone())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        result = run()
    finally:
        handle.remove()
    return result, rows


def _expected_condition(mode: str, x: torch.Tensor, folders: list[str], stages: Path) -> torch.Tensor:
    """Each mode's condition tokens (B, Tc) for center crops ``x`` (B, 3, 32, 32), computed without the
    model's condition code: what the mode is for, spelled out."""
    import torch.nn.functional as F

    from vqforge.models.conditioning.edges import canny

    B = x.shape[0]
    if mode == "unconditional":  # one start token, the same for every image
        return torch.zeros(B, 1, dtype=torch.long)
    if mode == "class":  # the index of the image's folder among the sorted folder names
        names = sorted(set(folders))
        return torch.tensor([[names.index(f)] for f in folders])
    if mode == "edges":  # the edge stage's codes of the image's own edge map in {-1, 1}
        return vqforge.load(stages / "edges").encode_to_indices(canny(x) * 2 - 1).flatten(1)
    if mode == "lowres":  # the low-resolution stage's codes of the image averaged over 2x2 pixels
        return vqforge.load(stages / "lowres").encode_to_indices(F.avg_pool2d(x, 2)).flatten(1)
    if mode == "coord":  # raster position / (H*W), averaged over 4x4 cells, rounded to 64 levels (vocab 65)
        pos = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32) / (32 * 32)
        return (F.avg_pool2d(pos, 4) * 64).round().long().flatten(1).expand(B, -1)
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["unconditional", "class", "edges", "lowres", "coord"])
def test_train_on_the_fly(mode, stages, tmp_path):
    """Training on raw photos feeds the GPT each image's tokens behind that image's own condition, as the mode
    defines it (checked against an independent computation), and the run it writes loads with its labels."""
    from vqforge.data.images import ImageDataset, find_images, split_files

    cond = {"unconditional": UnconditionalConfig(),
            "class": ClassConfig(n_classes=3),
            "edges": EdgesConfig(),
            "lowres": LowresConfig(lowres_factor=2),
            "coord": CoordConfig(coord_n_embed=64, coord_down_factor=4)}[mode]
    # center crops, one batch = the whole training split: every step shows every training image once
    cfg = TransformerRunConfig(
        model=TransformerConfig(gpt=GPTConfig(vocab_size=65, block_size=128, n_layer=1, n_head=2, n_embd=32),
                                cond=cond),
        train=TransformerSettings(batch_size=3, learning_rate=1e-3, image_size=32, crop="center",
                                     val_fraction=0.25, val_every=0, preview_every=2, n_samples=2,
                                     checkpoint_every=0))
    cond_stage = {"edges": stages / "edges", "lowres": stages / "lowres"}.get(mode)
    m, rows = _fed_to_the_gpt(lambda: train_transformer(cfg, str(PHOTOS), tmp_path / "run", first_stage=str(stages / "vq"),
                                            cond_stage=str(cond_stage) if cond_stage else None, max_steps=2,
                                            quiet=True))
    assert m.step == 2 and len(rows) == 2 and all(r.shape[0] == 3 for r in rows)

    train_files, _ = split_files(find_images(PHOTOS), 0.25, seed=0)
    x = torch.stack([ImageDataset(train_files, 32, "center")[i]["image"] for i in range(3)])  # (3, 3, 32, 32)
    z = vqforge.load(stages / "vq").encode_to_indices(x).flatten(1)  # (3, 64)
    c = _expected_condition(mode, x, [f.parent.name for f in train_files], stages)  # (3, Tc)
    if mode != "unconditional":
        assert len({tuple(r.tolist()) for r in c}) > 1 or mode == "coord", "conditions must tell images apart"
    expected = sorted(tuple(r.tolist()) for r in torch.cat([c, z[:, :-1]], 1))  # the GPT's input: c, then z
    for seen in rows:  # each step: the same three (condition, image) pairs, in any order
        assert sorted(tuple(r.tolist()) for r in seen) == expected

    model = vqforge.load(tmp_path / "run")
    assert model.mode == mode and (tmp_path / "run" / "images" / "samples_0000002.png").is_file()
    if mode == "class":
        ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
        assert ckpt["label_names"] == ["alaska_lakes", "australia", "black_forest"]


def test_class_dropout_swaps_labels_for_the_null_class(stages, tmp_path):
    """Label dropout (for classifier-free guidance) replaces a share of the labels by the NULL class token."""
    cfg = TransformerRunConfig(
        model=TransformerConfig(gpt=GPTConfig(vocab_size=65, block_size=128, n_layer=1, n_head=2, n_embd=32),
                                cond=ClassConfig(n_classes=3, dropout=0.5)),
        train=TransformerSettings(batch_size=3, learning_rate=1e-3, image_size=32, crop="center",
                                     val_fraction=0.25, val_every=0, preview_every=0, checkpoint_every=0))
    _, rows = _fed_to_the_gpt(lambda: train_transformer(cfg, str(PHOTOS), tmp_path / "run", first_stage=str(stages / "vq"),
                                            max_steps=8, quiet=True))
    labels = torch.cat([r[:, 0] for r in rows])  # (24,) the condition token of every row
    null = vqforge.load(tmp_path / "run").null_token
    assert null == 3 and set(labels.tolist()) <= {0, 1, 2, null}
    assert 4 <= int((labels == null).sum()) <= 20  # about half of 24 (binomial, p=0.5)


def test_encode_labels_from_folders(stages, tmp_path):
    import subprocess
    import sys

    from vqforge.data.tokens import TokenDataset

    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "vqforge", "encode", "--model", str(stages / "vq"), "--data", str(PHOTOS),
                        "--labels", "folders", "--size", "32", "--out", str(tmp_path / "tok"), "--quiet",
                        "--workers", "2", "--batch-size", "3"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    ds = TokenDataset(tmp_path / "tok")
    assert ds.label_names == ["alaska_lakes", "australia", "black_forest"]
    assert [int(ds[i]["label"]) for i in range(len(ds))] == [0, 1, 1, 2]
    assert ds[0]["tokens"].shape == (64,)
    # a missing first stage or a bad data path is one clear line
    r = subprocess.run([sys.executable, "-m", "vqforge", "encode", "--model", str(tmp_path / "nope"), "--data",
                        str(PHOTOS), "--out", str(tmp_path / "t2")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.startswith("vqforge: error:") and len(r.stderr.strip().splitlines()) == 1


def _depth_ramp(w: int, h: int, i: int):
    """Photo ``i``'s depth map (h, w) float32: a raster-order ramp, curved differently per photo."""
    import numpy as np

    return (np.linspace(0.0, 1.0, w * h, dtype=np.float32) ** (1 + i) * 50 + 1).reshape(h, w)


def test_encode_depth_maps_and_label_file(stages, tmp_path):
    """Depth maps in the D-RIN layout (RGBA PNG whose 4 bytes are one float32) pair with the photos; labels
    come from a 'relative/path label' file."""
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    from vqforge.data.tokens import TokenDataset

    torch.manual_seed(0)
    vqforge.save_model(VQGAN(_vq(1, 16)), tmp_path / "depth")
    photos = sorted(PHOTOS.glob("*/*.jpg"))
    lines = []
    for i, p in enumerate(photos):
        rel = p.relative_to(PHOTOS)
        w, h = Image.open(p).size
        depth = _depth_ramp(w, h, i)
        out = tmp_path / "depthmaps" / rel.with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(depth.view(np.uint8).reshape(h, w, 4), mode="RGBA").save(out)
        lines.append(f"{rel.as_posix()} {'b' if i % 2 else 'a'}")
    (tmp_path / "labels.txt").write_text("\n".join(lines) + "\n")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "vqforge", "encode", "--model", str(stages / "vq"), "--data", str(PHOTOS),
                        "--cond-stage", str(tmp_path / "depth"), "--cond-data", str(tmp_path / "depthmaps"),
                        "--labels", str(tmp_path / "labels.txt"), "--size", "32", "--out", str(tmp_path / "tok"),
                        "--quiet"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    ds = TokenDataset(tmp_path / "tok")
    assert ds.meta["cond"]["mode"] == "depth" and ds.meta["cond"]["grid"] == [8, 8]
    assert ds.label_names == ["a", "b"] and [int(ds[i]["label"]) for i in range(4)] == [0, 1, 0, 1]
    # each photo's condition tokens: its own depth map, cut as the photo (96x64 -> smallest side 32 -> 48x32,
    # bilinear; centre 32x32), normalised to [-1, 1] by its own min/max, coded by the depth stage (nearest codes)
    stage = vqforge.load(tmp_path / "depth")
    for i, p in enumerate(photos):
        assert Image.open(p).size == (96, 64)
        resized = Image.fromarray(_depth_ramp(96, 64, i), "F").resize((48, 32), Image.BILINEAR)
        cut = np.asarray(resized.crop((8, 0, 40, 32)))
        d = torch.from_numpy(cut.copy())[None, None]  # (1, 1, 32, 32)
        expect = nearest_codes(stage, (d - d.min()) / (d.max() - d.min()) * 2 - 1)[0]  # (64,): f4 on 32 px
        assert torch.equal(torch.as_tensor(ds[i]["cond"]).long(), expect), p
    assert len({tuple(ds[i]["cond"].tolist()) for i in range(4)}) == 4  # each photo its own map: pairing shows


# Runs under torchrun: the CLI trains; a forward pre-hook keeps this rank's GPT, whose weights are saved at exit.
DDP_RANK_SCRIPT = """
import os, sys, torch
from vqforge.cli import main
from vqforge.models.gpt import GPT
kept = []

def keep(module, args):  # this rank's GPT and its weights before the first step
    if isinstance(module, GPT) and module.training and not kept:
        kept.extend([module, {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}])

hook = torch.nn.modules.module.register_module_forward_pre_hook(keep)
rc = main(sys.argv[2:])
final = {k: v.detach().cpu() for k, v in kept[0].state_dict().items()}
torch.save({"initial": kept[1], "final": final}, os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
sys.exit(rc)
"""


def test_two_process_ddp(stages, tmp_path):
    """`torchrun --nproc_per_node 2` (gloo on CPU): the ranks see different images but end with the same
    weights (gradients are averaged), which moved from the initial ones; rank 0 writes the run."""
    import json
    import socket
    import subprocess
    import sys

    import yaml

    cfg = {"model": {"gpt": {"vocab_size": 64, "block_size": 65, "n_layer": 1, "n_head": 2, "n_embd": 32},
                     "cond": {"mode": "unconditional"}},
           "train": {"batch_size": 1, "learning_rate": 1e-2, "image_size": 32, "val_fraction": 0.25,
                     "val_every": 0, "preview_every": 0, "checkpoint_every": 0}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "rank.py").write_text(DDP_RANK_SCRIPT)
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin"}
    with socket.socket() as sock:  # a free port, so parallel test runs do not collide
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        port, str(tmp_path / "rank.py"), str(tmp_path), "train", "transformer", "--config",
                        str(tmp_path / "cfg.yaml"), "--data", str(PHOTOS), "--first-stage", str(stages / "vq"),
                        "--out", str(tmp_path / "run"), "--max-steps", "2", "--quiet", "--json"],
                       capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    printed = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1 and json.loads(printed[0])["step"] == 2  # rank 0 only
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 2 and len(ckpt["rng"]) == 2  # both ranks' generators, for exact resume
    rank0, rank1 = (torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in (0, 1))
    trained = {k[len("transformer."):]: v for k, v in ckpt["model"].items() if k.startswith("transformer.")}
    assert rank0["final"].keys() == rank1["final"].keys() == trained.keys()
    for k in trained:
        torch.testing.assert_close(rank1["initial"][k], rank0["initial"][k], rtol=0, atol=0)
        torch.testing.assert_close(rank1["final"][k], rank0["final"][k], rtol=0, atol=0, msg=f"ranks disagree on {k}")
        torch.testing.assert_close(trained[k], rank0["final"][k], rtol=0, atol=0)
    assert not torch.equal(rank0["initial"]["head.weight"], rank0["final"]["head.weight"])  # it trained


def test_coordinate_crops_of_large_images(stages, tmp_path):
    """Coordinate conditioning on crops: the crop's coordinates come from the whole resized image."""
    from vqforge.data.paired import CoordCrops

    ds = CoordCrops(sorted(PHOTOS.glob("*/*.jpg")), full_size=64, crop=32)
    a, b = ds[(0, 1)], ds[(0, 2)]
    assert a["image"].shape == (3, 32, 32) and a["coordinates"].shape == (1, 32, 32)
    assert not torch.equal(a["coordinates"], b["coordinates"])  # different crops, different positions
    assert 0.0 <= float(a["coordinates"].min()) and float(a["coordinates"].max()) < 1.0
    cfg = TransformerRunConfig(
        model=TransformerConfig(gpt=GPTConfig(vocab_size=65, block_size=128, n_layer=1, n_head=2, n_embd=32),
                                cond=CoordConfig(coord_n_embed=64, coord_down_factor=4)),
        train=TransformerSettings(batch_size=2, learning_rate=1e-3, image_size=32, coord_full_size=64,
                                     val_fraction=0.25, val_every=0, preview_every=0, checkpoint_every=0))
    m = train_transformer(cfg, str(PHOTOS), tmp_path / "run", first_stage=str(stages / "vq"), max_steps=2, quiet=True)
    assert m.step == 2


def test_init_from_starts_at_another_runs_gpt(stages, tmp_path):
    """train.init_from: a new run's GPT starts at another transformer's weights (fine-tuning on tokens of a
    retrained first stage, as the bundled landscapes were), its stages still from --first-stage; a model that
    is no transformer, or a GPT of another shape, is refused in one line before any step."""
    from vqforge.io import VQForgeError

    def cfg(n_embd: int = 32, init_from: str = "") -> TransformerRunConfig:
        return TransformerRunConfig(
            model=TransformerConfig(gpt=GPTConfig(vocab_size=65, block_size=128, n_layer=1, n_head=2, n_embd=n_embd),
                                    cond=UnconditionalConfig()),
            train=TransformerSettings(batch_size=3, learning_rate=1e-3, image_size=32, crop="center", val_fraction=0.25,
                                      val_every=0, preview_every=0, checkpoint_every=0, init_from=init_from))

    def run(c: TransformerRunConfig, out: str, steps: int):
        return _fed_to_the_gpt(lambda: train_transformer(c, str(PHOTOS), tmp_path / out, first_stage=str(stages / "vq"),
                                                         max_steps=steps, quiet=True))[0]

    from vqforge.models.gpt import GPT

    first: dict = {}

    def keep_first(module, args) -> None:  # the GPT's weights at its first training forward
        if isinstance(module, GPT) and module.training and "w" not in first:
            first["w"] = {k: v.detach().clone() for k, v in module.state_dict().items()}

    hook = torch.nn.modules.module.register_module_forward_pre_hook(keep_first)
    try:
        run(cfg(), "base", 3)
        base = vqforge.load(tmp_path / "base")
        first.clear()
        run(cfg(init_from=str(tmp_path / "base")), "tuned", 1)
    finally:
        hook.remove()
    for k, v in base.transformer.state_dict().items():  # the tuned run's GPT before its first step
        torch.testing.assert_close(first["w"][k], v, rtol=0, atol=0, msg=k)
    with pytest.raises(VQForgeError, match="another GPT") as e:
        run(cfg(n_embd=16, init_from=str(tmp_path / "base")), "wide", 1)
    assert "\n" not in str(e.value)
    with pytest.raises(VQForgeError, match="not a transformer"):
        run(cfg(init_from=str(stages / "vq")), "vq", 1)
