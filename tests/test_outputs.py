"""Interrupted and failing outputs: folders appear complete or not at all; a full disk or a read-only folder
is one line naming the output, and nothing is left behind."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PYTHON, REPO, cli_env

from vqforge.data.tokens import TokenDataset, is_token_dir, write_tokens
from vqforge.io import OutputError, VQForgeError, atomic_dir, write_json

PHOTOS = REPO / "tests" / "fixtures" / "sflckr_photos"


def _siblings(path: Path) -> list[str]:
    """Everything in ``path``'s folder besides ``path`` itself (temporary folders would show up here)."""
    return sorted(p.name for p in path.parent.iterdir() if p != path)


def _tokens(out: Path, n: int = 3, value: int = 1) -> Path:
    return write_tokens(out, np.full((n, 4), value), (2, 2), 8, (8, 8), labels=np.arange(n) % 2)


# ------------------------------------------------------------------------------------------ atomic_dir
def test_folder_appears_only_when_complete(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
        assert not out.exists()  # nothing visible under the final name while writing
    assert (out / "a.txt").read_text() == "a" and _siblings(out) == []


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_or_interrupt_leaves_nothing_and_keeps_the_old_folder(tmp_path, error):
    out = _tokens(tmp_path / "tok", value=1)
    with pytest.raises(type(error)):
        with atomic_dir(out, "token dataset", replaceable=is_token_dir) as tmp:
            (tmp / "tokens.npy").write_bytes(b"half")
            raise error
    assert TokenDataset(out).tokens[0, 0] == 1 and _siblings(out) == []
    fresh = tmp_path / "fresh"
    with pytest.raises(type(error)):
        with atomic_dir(fresh):
            raise error
    assert not fresh.exists() and _siblings(fresh) == ["tok"]


def test_an_existing_dataset_is_replaced_a_foreign_folder_refused(tmp_path):
    out = _tokens(tmp_path / "tok", n=3, value=1)
    _tokens(out, n=5, value=2)
    assert len(TokenDataset(out)) == 5 and TokenDataset(out).tokens[0, 0] == 2 and _siblings(out) == []
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(VQForgeError) as err:
        _tokens(mine)
    assert str(err.value).startswith(str(mine)) and "not a token dataset" in str(err.value)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """A writer that fails with ENOSPC on the second file: no dataset, no temporary folder, one line. (Folders are
    fsynced too, after renames, best effort: only the files' fsyncs are counted and failed here.)"""
    import stat

    import vqforge.io as vio

    calls = []
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            return real_fsync(fd)
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(vio.os, "fsync", fsync)
    out = tmp_path / "tok"
    with pytest.raises(OutputError) as err:
        _tokens(out)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(out)) and "No space left on device" in msg
    assert "nothing was written" in msg and err.value.errno == errno.ENOSPC and isinstance(err.value, OSError)
    assert ".tmp" not in msg  # names the output, not the temporary folder
    assert not out.exists() and _siblings(out) == []
    # a single file: the same
    with pytest.raises(OutputError, match="No space left"):
        calls.clear()
        calls.append(0)
        write_json(tmp_path / "x.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


STAGE_AND_WAIT = """
import sys, time
from vqforge.io import atomic_dir
with atomic_dir(sys.argv[1]) as tmp:
    (tmp / "part.txt").write_text("part")
    print("staged", flush=True)
    time.sleep(60)
"""


def test_sigkill_leaves_the_output_absent_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([PYTHON, "-c", STAGE_AND_WAIT, str(out)], stdout=subprocess.PIPE, text=True,
                            env=cli_env())
    assert proc.stdout.readline().strip() == "staged"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    stale = _siblings(out)
    assert len(stale) == 1 and stale[0].startswith(".out.tmp-")  # the killed process's staging folder
    with atomic_dir(out) as tmp:
        (tmp / "done.txt").write_text("done")
    assert _siblings(out) == [] and [p.name for p in out.iterdir()] == ["done.txt"]


# ------------------------------------------------------------------------------------------ commands
def _cli(*args, wrap: list[str] | None = None):
    cmd = [PYTHON, "-m", "vqforge", *map(str, args)]
    if wrap:  # run under a private mount namespace: sh -c 'MOUNT && exec python -m vqforge ...'
        cmd = ["unshare", "-m", "sh", "-c", " && ".join(wrap) + ' && exec "$@"', "sh", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=300)


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def vq_model(tmp_path_factory):
    import torch

    from vqforge.api import save_model
    from vqforge.models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
    from vqforge.quantizers import VQConfig

    torch.manual_seed(0)
    cfg = VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 1), num_res_blocks=0, attn_resolutions=(), resolution=32,
                                        z_channels=4), VQConfig(n_embed=16, embed_dim=4))
    return save_model(VQGAN(cfg), tmp_path_factory.mktemp("vq") / "model")


def _read_only(folder: Path) -> list[str] | None:
    """Make ``folder`` read-only for the command: chmod for a normal user; root ignores permissions, so a
    read-only bind mount in a private mount namespace (the machine's mounts are untouched)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return None
    if not _can_mount():
        pytest.skip("running as root without unshare: cannot make a folder read-only")
    return [f"mount --bind '{folder}' '{folder}'", f"mount -o remount,bind,ro '{folder}'"]


@pytest.mark.parametrize("command", ["encode", "reconstruct"])
def test_read_only_output_folder_is_one_line_and_writes_nothing(command, vq_model, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    wrap = _read_only(ro)
    args = {"encode": ("encode", "--model", vq_model, "--data", PHOTOS, "--size", 32, "--out", ro / "tok",
                       "--quiet"),
            "reconstruct": ("reconstruct", "--model", vq_model, "--data", PHOTOS, "--size", 32, "--out",
                            ro / "rec")}[command]
    try:
        r = _cli(*args, wrap=wrap)
    finally:
        ro.chmod(0o755)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("vqforge: error: ")
    assert str(ro) in err and ("Read-only file system" in err or "Permission denied" in err)
    assert list(ro.iterdir()) == []


def test_really_full_disk_during_encode(vq_model, tmp_path):
    """A real 8 KiB tmpfs fills up while the token dataset is written: one line, and the disk is left empty."""
    if not _can_mount():
        pytest.skip("needs root and unshare to mount a tiny tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = tmp_path / "left.txt"
    wrap = [f"mount -t tmpfs -o size=8k none '{disk}'"]
    cmd = [PYTHON, "-m", "vqforge", "encode", "--model", str(vq_model), "--data", str(PHOTOS), "--size", "32",
           "--crops", "8", "--out", str(disk / "tok"), "--quiet"]
    script = " && ".join(wrap) + f' ; "$@" ; rc=$? ; ls -A "{disk}" > "{probe}" ; exit $rc'
    r = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *cmd], capture_output=True, text=True,
                       env=cli_env(), timeout=300)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and str(disk / "tok") in err and "No space left on device" in err
    assert probe.read_text() == ""  # what the tmpfs held when the command had exited: nothing


@pytest.fixture(scope="module")
def class_model(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_sampling import tiny_net

    from vqforge.api import save_model
    from vqforge.models.conditioning import ClassConfig

    return save_model(tiny_net(ClassConfig(n_classes=3, null_class=True)), tmp_path_factory.mktemp("gpt") / "m")


def _command(name: str, vq_model: Path, class_model: Path, out: Path) -> list[str]:
    image = REPO / "tests" / "fixtures" / "sflckr_photos" / "australia" / "8720651218_ca82a6608e_b.jpg"
    return [str(a) for a in {
        "reconstruct": ("reconstruct", "--model", vq_model, "--data", PHOTOS, "--size", 32, "--out", out),
        "sample": ("sample", "--model", class_model, "--num", 3, "--batch-size", 1, "--out", out),
        "complete": ("complete", "--model", class_model, "--class", 1, "--data", image, "--mask", image,
                     "--num", 3, "--batch-size", 1, "--out", out),
    }[name]]


@pytest.mark.parametrize("command", ["reconstruct", "sample", "complete"])
def test_interrupted_command_leaves_no_folder(command, vq_model, class_model, tmp_path, monkeypatch):
    """Ctrl-C in the middle of writing (a writer interrupts, in-process): the output folder does not appear;
    a complete earlier output of the same command is still there, whole."""
    import vqforge.imageio as imageio
    from vqforge.cli import main

    out = tmp_path / "out"
    assert main(_command(command, vq_model, class_model, out)) == 0
    before = sorted(p.name for p in out.iterdir())
    real, n = imageio.save_image, []

    def save_then_interrupt(path, image):
        n.append(path)
        if len(n) == 2:
            raise KeyboardInterrupt
        return real(path, image)

    monkeypatch.setattr(imageio, "save_image", save_then_interrupt)
    assert main(_command(command, vq_model, class_model, out)) == 130
    assert len(n) == 2 and sorted(p.name for p in out.iterdir()) == before and _siblings(out) == []
    monkeypatch.undo()
    assert main(_command(command, vq_model, class_model, tmp_path / "fresh")) == 0
    monkeypatch.setattr(imageio, "save_image", save_then_interrupt)
    n.clear()
    assert main(_command(command, vq_model, class_model, tmp_path / "new")) == 130
    assert not (tmp_path / "new").exists() and _siblings(tmp_path / "new") == ["fresh", "out"]


@pytest.mark.parametrize("command", ["reconstruct", "sample", "complete", "encode"])
def test_a_foreign_output_folder_is_refused_before_any_work(command, tmp_path, capsys):
    """A non-empty folder that the command did not write is refused before the model is even looked for."""
    from vqforge.cli import main

    out = tmp_path / "photos"
    out.mkdir()
    (out / "mine.jpg").write_bytes(b"x")
    argv = _command(command if command != "encode" else "reconstruct", tmp_path / "nope", tmp_path / "nope", out)
    if command == "encode":
        argv = ["encode", "--model", str(tmp_path / "nope"), "--data", str(PHOTOS), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "is not a" in err and "nope" not in err, err
    assert [p.name for p in out.iterdir()] == ["mine.jpg"]
