"""Issue 2: the VQGAN first stage loads the original's files and matches its outputs exactly."""

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml
from conftest import PYTHON, cli_env, reference

import vqforge
from vqforge.io import VQForgeError

CASES = ["vqgan_f4_legacy", "vqgan_f8_seg", "gumbel_f4"]


def write_original_pair(ref: dict, tmp_path, *, with_loss_keys=True, lightning_extras=True):
    """Write a project YAML + Lightning .ckpt in the original's layout for a reference case."""
    cfg = ref["config"]
    params = {"embed_dim": cfg["embed_dim"], "n_embed": cfg["n_embed"], "ddconfig": cfg["ddconfig"],
              "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                             "params": {"disc_start": 10000, "disc_weight": 0.8, "codebook_weight": 1.0}}}
    if ref["kind"] == "gumbel_vqgan":
        target = "taming.models.vqgan.GumbelVQ"
        params["kl_weight"] = 1e-8
        params["temperature_scheduler_config"] = {"target": "taming.lr_scheduler.LambdaWarmUpCosineScheduler",
                                                  "params": {"warm_up_steps": 0, "max_decay_steps": 1000001,
                                                             "lr_start": 0.9, "lr_max": 0.9, "lr_min": 1e-6}}
    else:
        target = "taming.models.vqgan.VQModel"
        if not cfg["legacy"]:
            params["legacy"] = False
    config = {"model": {"base_learning_rate": 4.5e-6, "target": target, "params": params}}
    cfg_path = tmp_path / "project.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    sd = dict(ref["state_dict"])
    if with_loss_keys:
        sd["loss.discriminator.main.0.weight"] = torch.zeros(4, 3, 4, 4)
        sd["loss.perceptual_loss.lin0.model.1.weight"] = torch.zeros(1, 64, 1, 1)
    ckpt = {"epoch": 3, "global_step": 1234, "state_dict": sd}
    if lightning_extras:
        # Lightning 1.0 keys callback states by the callback's class: a pickled global of its own.
        names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
        mods = {n: types.ModuleType(n) for n in names}
        mods[names[0]].callbacks = mods[names[1]]
        mods[names[1]].model_checkpoint = mods[names[2]]
        mod = mods[names[2]]

        class ModelCheckpoint:
            pass

        ModelCheckpoint.__module__ = mod.__name__
        ModelCheckpoint.__qualname__ = "ModelCheckpoint"
        mod.ModelCheckpoint = ModelCheckpoint
        assert not any(n in sys.modules for n in names)
        sys.modules.update(mods)
        try:
            ckpt["callbacks"] = {ModelCheckpoint: {"best_model_score": torch.tensor(0.5)}}
            torch.save(ckpt, tmp_path / "last.ckpt")
        finally:
            for n in names:
                del sys.modules[n]
    else:
        torch.save(ckpt, tmp_path / "last.ckpt")
    return cfg_path, tmp_path / "last.ckpt"


@pytest.mark.parametrize("name", CASES)
def test_load_taming_matches_reference(name, tmp_path, capsys):
    ref = reference(name)
    cfg_path, ckpt_path = write_original_pair(ref, tmp_path)
    model = vqforge.load_taming(cfg_path, ckpt_path)
    assert "training-only" in capsys.readouterr().err
    x, out = ref["inputs"]["x"], ref["outputs"]
    with torch.no_grad():
        h = model.encode_latents(x)
        q = model.quantize(h)
        torch.testing.assert_close(h, out["h"], atol=1e-4, rtol=1e-4)
        assert torch.equal(q.indices, out["indices"])
        assert q.indices.shape == out["indices"].shape and q.indices.dtype == torch.long
        if ref["kind"] == "vqgan":
            torch.testing.assert_close(q.quantized, out["quant"], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(q.losses["loss"], out["emb_loss"], atol=1e-5, rtol=0)
            assert model.quantize.legacy == ref["config"]["legacy"]
            dec = model.decode(q.quantized)
        else:
            torch.testing.assert_close(model.quantize.logits(h), out["logits"], atol=1e-4, rtol=1e-4)
            dec = model.decode_indices(q.indices)
        torch.testing.assert_close(dec, out["dec"], atol=1e-4, rtol=1e-4)
        # the public API agrees with the step-by-step path
        assert torch.equal(model.encode_to_indices(x), out["indices"])
        torch.testing.assert_close(model.decode_indices(out["indices"]), out["dec"], atol=1e-4, rtol=1e-4)


def test_legacy_flag_moves_beta():
    """legacy=True weights the codebook term by beta; the fixed form weights the commitment term."""
    from vqforge.quantizers import VectorQuantizer

    torch.manual_seed(0)
    z = torch.randn(2, 4, 3, 3)
    q_new, q_old = VectorQuantizer(8, 4, beta=0.25, legacy=False), VectorQuantizer(8, 4, beta=0.25, legacy=True)
    q_old.load_state_dict(q_new.state_dict())
    a, b = q_new(z), q_old(z)
    assert torch.equal(a.indices, b.indices)
    mse = ((a.quantized - z) ** 2).mean()
    torch.testing.assert_close(a.losses["loss"], 1.25 * mse)  # same value, different gradients
    torch.testing.assert_close(b.losses["loss"], 1.25 * mse)
    cb = q_new.embedding.weight
    for q, expected_codebook_scale in ((q_new, 1.0), (q_old, 0.25)):
        zz = z.clone().requires_grad_(True)
        out = q(zz)
        g_code, g_z = torch.autograd.grad(out.losses["loss"], [q.embedding.weight, zz])
        zq = q.embed_indices(out.indices)
        # d/dz of the commitment term only (the straight-through output is not in the loss)
        expected_gz = (1.25 - expected_codebook_scale) * 2 * (z - zq) / z.numel()
        torch.testing.assert_close(g_z, expected_gz)
    assert cb is q_new.embedding.weight


def test_gumbel_eval_is_argmax_and_training_is_stochastic():
    from vqforge.quantizers import GumbelQuantizer

    torch.manual_seed(0)
    q = GumbelQuantizer(4, 4, 16)
    z = torch.randn(2, 4, 5, 5)
    q.eval()
    out = q(z)
    assert torch.equal(out.indices, q.logits(z).argmax(1))
    assert torch.equal(out.quantized, q.embed_indices(out.indices))
    q.train()
    a, b = q(z), q(z)
    assert not torch.equal(a.indices, b.indices)
    assert a.losses["kl"].ndim == 0 and a.losses["loss"].requires_grad


def run_cli(*args):
    return subprocess.run([PYTHON, "-m", "vqforge", *map(str, args)], capture_output=True, text=True, env=cli_env())


@pytest.mark.parametrize("name", ["vqgan_f4_legacy", "gumbel_f4"])
def test_convert_then_load_is_bit_identical(name, tmp_path):
    ref = reference(name)
    cfg_path, ckpt_path = write_original_pair(ref, tmp_path)
    res = run_cli("convert", "--config", cfg_path, "--checkpoint", ckpt_path, "--out", tmp_path / "model")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "model" / "model.yaml").is_file() and (tmp_path / "model" / "model.safetensors").is_file()
    original = vqforge.load_taming(cfg_path, ckpt_path)
    converted = vqforge.load(tmp_path / "model")
    x = ref["inputs"]["x"]
    with torch.no_grad():
        a, b = original(x), converted(x)
    assert torch.equal(a.reconstruction, b.reconstruction)
    assert torch.equal(a.quantizer.indices, b.quantizer.indices)
    assert converted.config == original.config


def test_convert_never_replaces_what_it_did_not_write_and_is_atomic(tmp_path, capsys, monkeypatch):
    """`convert --out DIR` replaced an existing, different model, wrote into a folder of the user's own files, and a
    kill between its two renames left new weights beside the old model.yaml. Now: the same conversion again
    replaces itself; another model or other files are refused (one line, nothing changed) unless --overwrite; and
    a failure at the last moment of the write leaves the old directory exactly as it was."""
    import os

    from vqforge.cli import main

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cfg_a, ckpt_a = write_original_pair(reference("vqgan_f4_legacy"), tmp_path / "a")
    cfg_b, ckpt_b = write_original_pair(reference("gumbel_f4"), tmp_path / "b")
    model = tmp_path / "model"
    conv = ["convert", "--out", str(model)]
    assert main(conv + ["--config", str(cfg_a), "--checkpoint", str(ckpt_a)]) == 0
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    assert main(conv + ["--config", str(cfg_a), "--checkpoint", str(ckpt_a)]) == 0  # the same conversion: fine
    capsys.readouterr()
    assert main(conv + ["--config", str(cfg_b), "--checkpoint", str(ckpt_b)]) == 2  # another model
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds another model" in err and "--overwrite" in err, err
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own file")
    assert main(["convert", "--out", str(mine), "--config", str(cfg_a), "--checkpoint", str(ckpt_a)]) == 2
    assert "files vqforge did not write" in capsys.readouterr().err and os.listdir(mine) == ["notes.txt"]

    real_replace, calls = os.replace, []

    def killed_at_the_swap(src, dst):  # Ctrl-C once, as the new folder takes the old one's place
        calls.append(dst)
        if Path(dst) == model and len([c for c in calls if Path(c) == model]) == 1:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_at_the_swap)
    assert main(conv + ["--config", str(cfg_b), "--checkpoint", str(ckpt_b), "--overwrite"]) == 130  # interrupted
    monkeypatch.setattr(os, "replace", real_replace)
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before  # the old model, whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]  # nothing left beside it
    assert main(conv + ["--config", str(cfg_b), "--checkpoint", str(ckpt_b), "--overwrite"]) == 0
    assert vqforge.load(model).config == vqforge.load_taming(cfg_b, ckpt_b).config


def one_line_error(res):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("vqforge: error:")]
    assert len(lines) == 1 and res.stderr.rstrip().endswith(lines[0]), res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def test_truncated_checkpoint_gives_one_line_error(tmp_path):
    cfg_path, ckpt_path = write_original_pair(reference("vqgan_f4_legacy"), tmp_path)
    data = ckpt_path.read_bytes()
    ckpt_path.write_bytes(data[: len(data) // 2])
    res = run_cli("convert", "--config", cfg_path, "--checkpoint", ckpt_path, "--out", tmp_path / "model")
    line = one_line_error(res)
    assert str(ckpt_path) in line and ("truncated" in line or "corrupt" in line)
    assert not (tmp_path / "model").exists()


def test_corrupted_checkpoint_gives_one_line_error(tmp_path):
    cfg_path, ckpt_path = write_original_pair(reference("vqgan_f4_legacy"), tmp_path)
    ckpt_path.write_bytes(b"this is not a checkpoint at all" * 10)
    line = one_line_error(run_cli("convert", "--config", cfg_path, "--checkpoint", ckpt_path, "--out", tmp_path / "m"))
    assert str(ckpt_path) in line


def test_mismatched_config_gives_one_line_error(tmp_path):
    ref = reference("vqgan_f4_legacy")
    cfg_path, ckpt_path = write_original_pair(ref, tmp_path)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["model"]["params"]["ddconfig"]["ch"] = 64
    cfg_path.write_text(yaml.safe_dump(cfg))
    line = one_line_error(run_cli("convert", "--config", cfg_path, "--checkpoint", ckpt_path, "--out", tmp_path / "m"))
    assert "shape mismatch" in line and "encoder.conv_in.weight" in line
    assert not (tmp_path / "m").exists()


def test_missing_and_unexpected_keys_are_named(tmp_path):
    ref = reference("vqgan_f4_legacy")
    ref["state_dict"].pop("decoder.conv_out.bias")
    ref["state_dict"]["encoder.extra.weight"] = torch.zeros(1)
    cfg_path, ckpt_path = write_original_pair(ref, tmp_path)
    with pytest.raises(VQForgeError, match=r"missing keys: decoder\.conv_out\.bias.*unexpected keys: encoder\.extra\.weight"):
        vqforge.load_taming(cfg_path, ckpt_path)


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_code_is_refused(tmp_path, capsys):
    ref = reference("vqgan_f4_legacy")
    cfg_path, ckpt_path = write_original_pair(ref, tmp_path, lightning_extras=False)
    torch.save({"state_dict": ref["state_dict"], "hook": _Evil()}, ckpt_path)
    with pytest.raises(VQForgeError, match="pickled Python objects"):
        vqforge.load_taming(cfg_path, ckpt_path)
    assert "pickled code ran" not in capsys.readouterr().out


def test_unsupported_target_and_bad_yaml(tmp_path):
    ref = reference("vqgan_f4_legacy")
    cfg_path, ckpt_path = write_original_pair(ref, tmp_path)
    cfg_path.write_text("model:\n  target: taming.models.vqgan.Unknown\n  params: {}\n")
    with pytest.raises(VQForgeError, match="not supported"):
        vqforge.load_taming(cfg_path, ckpt_path)
    cfg_path.write_text("model: [unclosed\n")
    with pytest.raises(VQForgeError, match="not valid YAML"):
        vqforge.load_taming(cfg_path, ckpt_path)


def test_reconstruct_cli_writes_pngs_and_psnr(tmp_path):
    from PIL import Image

    ref = reference("vqgan_f4_legacy")
    cfg_path, ckpt_path = write_original_pair(ref, tmp_path)
    assert run_cli("convert", "--config", cfg_path, "--checkpoint", ckpt_path, "--out", tmp_path / "model").returncode == 0
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray((torch.rand(36, 40, 3) * 255).byte().numpy()).save(images / f"im{i}.png")
    (images / "broken.png").write_bytes(b"not a png")
    res = run_cli("reconstruct", "--model", tmp_path / "model", "--data", images / "im0.png", "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert "PSNR" in res.stdout and "mean PSNR" in res.stdout
    out = Image.open(tmp_path / "out" / "im0.png")
    assert out.size == (40, 36)  # 36x40 is a multiple of the f4 factor: kept whole
    line = one_line_error(run_cli("reconstruct", "--model", tmp_path / "model", "--data", images, "--out", tmp_path / "o2"))
    assert "broken.png" in line and "not a readable image" in line
    assert not (tmp_path / "o2").exists()  # inputs are checked before anything is written


def test_cli_help_and_version():
    res = run_cli("--version")
    assert res.returncode == 0 and vqforge.__version__ in res.stdout
    res = run_cli("--help")
    assert res.returncode == 0
    for cmd in ("convert", "reconstruct", "train", "sample", "evaluate"):
        assert cmd in res.stdout


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(VQForgeError, match="no such file"):
        vqforge.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VQForgeError, match="neither a model directory"):
        vqforge.load(tmp_path / "empty")
