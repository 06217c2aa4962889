"""No lost work and no poisoned weights: SIGKILL in the middle of a checkpoint write, a full disk, a read-only
run folder, non-finite losses (skipped steps, the stop after N in a row), gradient clipping."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vqforge.io import VQForgeError, load_torch
from vqforge.train.stream import ResumableSampler
from vqforge.train.vqgan import load_config, train_vqgan

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "assets" / "photos"
TINY = ROOT / "configs" / "vqgan_tiny.yaml"
# 16 px crops, GAN on from the start (every loss and both optimisers run), EMA on, a checkpoint every step
FAST = ["--device", "cpu", "train.image_size=16", "train.batch_size=4", "model.ddconfig.resolution=16",
        "loss.disc_start=0", "train.ema_decay=0.9", "train.val_every=0", "train.preview_every=0",
        "train.checkpoint_every=1", "train.log_every=1"]

# The training process with a disk that hangs in the middle of its n-th checkpoint write (after the data went
# to the temporary file, before the rename): the test kills it there, every time.
HUNG_DISK = """
import os, sys, time
_fsync, writes = os.fsync, 0
def fsync(fd):
    global writes
    if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".last.pt."):
        writes += 1
        if writes == int(os.environ["HANG_AT"]):
            open(os.environ["HANG_MARKER"], "w").close()
            time.sleep(3600)
    _fsync(fd)
os.fsync = fsync
from vqforge.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def _partial(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob(".last.pt.*.tmp")) if (run / "checkpoints").is_dir() else []


def _kill_during_save(args: list[str], run: Path, marker: Path, hang_at: int = 2) -> None:
    """Start training and SIGKILL it while it writes its ``hang_at``-th checkpoint."""
    proc = subprocess.Popen([sys.executable, "-c", HUNG_DISK, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            env={**_env(), "HANG_AT": str(hang_at), "HANG_MARKER": str(marker)})
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and not marker.exists():
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert marker.exists(), proc.stderr.read()[-2000:]
    marker.unlink()
    assert proc.returncode == -signal.SIGKILL
    assert _partial(run), "the kill lands in the middle of a checkpoint write"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
def test_sigkill_during_a_checkpoint_write_resumes_from_the_last_complete_one(tmp_path, capsys):
    from vqforge.cli import main

    run, marker = tmp_path / "run", tmp_path / "hung"
    _kill_during_save(["train", "vqgan", "--config", str(TINY), "--data", str(PHOTOS), "--out", str(run), "--quiet",
                       *FAST, "train.max_steps=10000"], run, marker)
    assert load_torch(run / "checkpoints" / "last.pt")["step"] == 1  # the complete one before the killed write
    # killed again in the middle of a write, this time of a resumed run (steps 2 and 3: the second write hangs)
    _kill_during_save(["train", "vqgan", "--resume", str(run), "--quiet"], run, marker)
    assert load_torch(run / "checkpoints" / "last.pt")["step"] == 2
    assert main(["train", "vqgan", "--resume", str(run), "--quiet", "--max-steps", "4",
                 "train.checkpoint_every=0"]) == 0, capsys.readouterr().err
    assert load_torch(run / "checkpoints" / "last.pt")["step"] == 4
    assert not _partial(run) and not list(run.glob(".*.tmp"))  # what the kills left mid-write is gone
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # no half-written log line survives
    assert [json.loads(line)["step"] for line in lines if "train/total_loss" in json.loads(line)] == [1, 2, 3, 4]


def test_a_full_disk_is_one_clear_line_and_leaves_no_partial_file(tmp_path):
    """RLIMIT_FSIZE makes writes beyond 200 kB fail like a full disk: the checkpoint write fails cleanly."""
    import resource

    run = tmp_path / "run"

    def limit():  # noqa: ANN202 - runs in the child
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    r = subprocess.run([sys.executable, "-m", "vqforge", "train", "vqgan", "--config", str(TINY), "--data",
                        str(PHOTOS), "--out", str(run), "--quiet", *FAST, "train.max_steps=3"],
                       env=_env(), capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    err = [line for line in r.stderr.splitlines() if line.startswith("vqforge: error")]
    assert len(err) == 1 and f"{run / 'checkpoints' / 'last.pt'}: cannot write the checkpoint at step 1" in err[0]
    assert "no checkpoint was written" in err[0]
    assert f"({os.strerror(errno.EFBIG)})" in err[0] and "OutputError" not in err[0]  # the system's reason
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == []  # no partial file, no temp file


def test_a_read_only_run_folder_is_one_clear_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from vqforge.cli import main

    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root ignores permissions: refuse creation under `ro` as a read-only mount would
        real_mkdir, real_open = os.mkdir, os.open

        def mkdir(path, *a, **k):
            if str(path).startswith(str(ro)):
                raise PermissionError(errno.EROFS, "Read-only file system", str(path))
            return real_mkdir(path, *a, **k)

        def open_(path, flags, *a, **k):
            if str(path).startswith(str(ro)) and flags & os.O_CREAT:
                raise PermissionError(errno.EROFS, "Read-only file system", str(path))
            return real_open(path, flags, *a, **k)

        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(os, "open", open_)
    else:
        ro.chmod(0o555)
    try:
        code = main(["train", "vqgan", "--config", str(TINY), "--data", str(PHOTOS), "--out", str(ro / "run"),
                     "--quiet", *FAST, "train.max_steps=2"])
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2 and "cannot write the config" in err and str(ro / "run") in err, err
    reason = os.strerror(errno.EROFS) if os.geteuid() == 0 else os.strerror(errno.EACCES)
    assert f"({reason})" in err and "OutputError" not in err, err  # the system's reason, not an exception name
    assert list(ro.iterdir()) == []


# ------------------------------------------------------------------------------------------ numerical faults
def _nan_for(monkeypatch, names: set[str]) -> None:
    """Items made from files called ``names`` come out as NaN images (a corrupt batch)."""
    from vqforge.data.images import ImageDataset

    item = ImageDataset.item

    def poisoned(self, img, rng, path):
        out = item(self, img, rng, path)
        if path.name in names:
            out["image"] = torch.full_like(out["image"], float("nan"))
        return out

    monkeypatch.setattr(ImageDataset, "item", poisoned)


def _tiny(*overrides: str):
    import dataclasses

    cfg = load_config(TINY, [o for o in FAST if "=" in o] + ["train.device=cpu", "train.keep_every=1",
                                                             "train.workers=0", *overrides])
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, data=str(PHOTOS)))


def test_a_nan_batch_never_reaches_the_weights_or_the_ema(tmp_path, monkeypatch, capsys, one_thread):
    from vqforge.data.images import find_images, split_files

    train_files, _ = split_files(find_images(PHOTOS), 0.1, seed=23)
    second_batch = ResumableSampler(len(train_files), seed=23)._indices()[4]  # the first step stays good
    _nan_for(monkeypatch, {train_files[second_batch].name})  # one training photo of 16 is corrupt
    run = tmp_path / "run"
    result = train_vqgan(_tiny("train.val_fraction=0.1"), run, max_steps=8, quiet=True)
    logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    total = {m["step"]: m["train/skipped_steps"] for m in logs if "train/skipped_steps" in m}
    skipped = [s for s in sorted(total) if total[s] > total.get(s - 1, 0)]
    assert result.skipped_steps == len(skipped) >= 1 and result.step == 8
    assert "non-finite" in capsys.readouterr().err
    for step in skipped:  # the skipped step changed nothing: weights, buffers (BatchNorm), EMA, discriminator
        before = load_torch(run / "checkpoints" / f"step_{step - 1:07d}.pt")
        after = load_torch(run / "checkpoints" / f"step_{step:07d}.pt")
        for part in ("model", "ema", "discriminator"):
            for k, v in before[part].items():
                assert torch.equal(v, after[part][k]), (step, part, k)
    final = load_torch(run / "checkpoints" / "last.pt")
    assert all(torch.isfinite(v).all() for part in ("model", "ema", "discriminator")
               for v in final[part].values() if v.is_floating_point())
    assert any(not torch.equal(v, final["model"][k]) for k, v in
               load_torch(run / "checkpoints" / "step_0000001.pt")["model"].items())  # the good steps trained


def test_the_run_stops_after_n_non_finite_steps_in_a_row(tmp_path, monkeypatch, one_thread):
    _nan_for(monkeypatch, {p.name for p in PHOTOS.iterdir()})
    with pytest.raises(VQForgeError, match=r"stopped at step 3: 3 steps in a row had non-finite losses.*"
                                           r"No checkpoint was followed by a finite step: start again with a lower "
                                           r"learning rate \(train.learning_rate=.*train.grad_clip"):
        train_vqgan(_tiny("train.max_nonfinite=3", "train.checkpoint_every=0", "train.keep_every=0"), tmp_path / "run",
                    max_steps=10, quiet=True)
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_step_guard_clips_and_skips_non_finite_gradients():
    from vqforge.train.distributed import DistInfo
    from vqforge.train.numerics import StepGuard

    lin = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    params = list(lin.parameters())
    guard = StepGuard({"lin": (opt, params)}, [], clip=0.5, max_nonfinite=2, dist=DistInfo())
    start = [p.detach().clone() for p in params]
    guard.zero_grad()
    (lin(torch.ones(2, 4)) * 1e3).sum().backward()
    applied, norms, _ = guard.apply({"loss": torch.tensor(1.0)}, 0)
    moved = float(torch.cat([(p.detach() - s).flatten() for p, s in zip(params, start)]).norm())
    assert applied and norms["lin"] > 100 and moved == pytest.approx(0.5, rel=1e-4)  # SGD lr 1: step = clipped grad
    start = [p.detach().clone() for p in params]
    guard.zero_grad()
    (lin(torch.ones(2, 4)).sum() * float("inf")).backward()
    applied, _, why = guard.apply({"loss": torch.tensor(1.0)}, 1)  # finite loss, infinite gradients
    assert not applied and "gradient norm" in why and guard.in_a_row == 1
    assert all(torch.equal(p, s) for p, s in zip(params, start)) and all(p.grad is None for p in params)


# ------------------------------------------------------------------------------------------ divergence
def _finite(ckpt: dict) -> bool:
    return all(torch.isfinite(v).all() for part in ("model", "ema", "discriminator") if ckpt.get(part)
               for v in ckpt[part].values() if v.is_floating_point())


def test_a_diverging_run_never_poisons_its_checkpoints_and_its_advice_works(tmp_path, capsys, one_thread):
    """The issue's run: `train.learning_rate=1e6` blew the weights up and last.pt / best.pt held them, best.pt
    with a NaN validation that nothing could beat, and the advised resume went NaN again. Here: three good steps
    at the usual rate, then the same run resumed at 1e6. No checkpoint ever holds non-finite weights or a
    non-finite best, last_good.pt holds step 3 (the last whose next step was finite), the stop message names it
    and a learning rate, and running exactly what it says trains on with finite losses."""
    import shlex

    from vqforge.cli import main

    run = tmp_path / "run"
    cfg = _tiny("train.val_fraction=0.1", "train.val_every=1", "train.keep_every=0", "train.max_nonfinite=3")
    train_vqgan(cfg, run, max_steps=3, quiet=True)
    assert (run / "checkpoints" / "last_good.pt").is_file()  # step 2's checkpoint, confirmed by step 3
    with pytest.raises(VQForgeError) as stop:
        train_vqgan(None, run, resume=True, overrides=["train.learning_rate=1e6"], max_steps=20, quiet=True)
    msg = str(stop.value)
    good = run / "checkpoints" / "last_good.pt"
    assert f"--resume {good}" in msg and "step 3" in msg and "train.learning_rate=" in msg, msg
    for f in (run / "checkpoints").glob("*.pt"):  # nothing blown up was written anywhere
        ckpt = load_torch(f)
        assert _finite(ckpt), f
        assert ckpt.get("best") is None or math.isfinite(ckpt["best"]["value"]), (f, ckpt["best"])
    assert load_torch(good)["step"] == 3
    assert load_torch(run / "checkpoints" / "best.pt")["step"] <= 3
    advice = msg[msg.index("vqforge train"):].split(" (")[0]
    argv = shlex.split(advice)[1:] + ["--max-steps", "6", "--quiet"]
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    assert "non-finite" not in capsys.readouterr().err
    last = load_torch(run / "checkpoints" / "last.pt")
    assert last["step"] == 6 and _finite(last)


def test_best_compares_a_non_finite_validation_as_the_worst(tmp_path, monkeypatch, one_thread):
    """A NaN validation is never 'the best' (it compares false with everything, so once recorded nothing could
    replace it); a run resumed from such a record lets the next finite value take its place."""
    from vqforge.train import vqgan as stage_mod

    values = iter([5.0, float("nan"), float("inf"), 2.0, 1.0])  # steps 0 (the baseline) to 4
    real = stage_mod.VQGANStage.validate

    def validate(self, ctx, model):
        out = dict(real(self, ctx, model))
        key = self.best_metric[0].replace("val_ema/", "val/")
        out[key] = next(values, 0.5)
        return out

    monkeypatch.setattr(stage_mod.VQGANStage, "validate", validate)
    run = tmp_path / "run"
    train_vqgan(_tiny("train.val_fraction=0.1", "train.val_every=1", "train.ema_decay=0", "train.keep_every=0"),
                run, max_steps=4, quiet=True)
    best = load_torch(run / "checkpoints" / "best.pt")
    assert best["best"]["value"] == 1.0 and best["step"] == 4


def test_commands_refuse_a_model_with_non_finite_weights(tmp_path, capsys):
    """`sample` exited 0 writing images from such weights and `reconstruct` printed `PSNR nan dB`: every loader
    now refuses them, naming the file."""
    from safetensors.torch import load_file, save_file

    from vqforge.api import save_model
    from vqforge.cli import main
    from vqforge.models.vqgan import VQGAN

    from PIL import Image

    from vqforge.models.conditioning import UnconditionalConfig

    sys.path.insert(0, str(Path(__file__).parent))
    from test_sampling import tiny_net, tiny_vq

    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "red.png")
    for name, model, cmd in (("vq", VQGAN(tiny_vq()), ["reconstruct", "--data", str(tmp_path / "red.png")]),
                             ("gpt", tiny_net(UnconditionalConfig()), ["sample", "--num", "1"])):
        save_model(model, tmp_path / name)
        weights = tmp_path / name / "model.safetensors"
        state = load_file(weights)
        key = next(k for k, v in state.items() if v.is_floating_point())
        state[key] = state[key].clone().fill_(float("nan"))
        save_file(state, weights)
        code = main(cmd + ["--model", str(tmp_path / name), "--out", str(tmp_path / f"out_{name}")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert str(weights) in err and "NaN or infinity" in err and key in err
        assert not (tmp_path / f"out_{name}").exists()
