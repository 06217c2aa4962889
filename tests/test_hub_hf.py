"""`hf://ORG/NAME[@REVISION]` models read from a Hugging Face cache in the layout huggingface_hub writes
(checked with its own scan_cache_dir), offline; and what `vqforge push` would upload (files and card), without
the network."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import vqforge
from vqforge.cli import main

hub = pytest.importorskip("huggingface_hub", reason="hf:// needs the optional huggingface_hub (pip install "
                                                      "'vqforge[hub]')")

from huggingface_hub import constants as hf_constants  # noqa: E402

FIX = Path(__file__).parent / "fixtures"
VQ = FIX / "fashion_vqgan"  # a 16 px f4 VQGAN model directory
PHOTOS = FIX / "sflckr_photos"


def put_revision(cache: Path, repo_id: str, files: dict[str, bytes], ref: str = "main") -> str:
    """One commit of ``repo_id`` in the cache, laid out as huggingface_hub lays it out: content-addressed
    blobs, a snapshot folder of relative symlinks named by the commit hash, ``refs/REF`` holding the hash."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items()))
                          .encode()).hexdigest()
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / blob).write_bytes(data)
        (snap / name).symlink_to(Path("../../blobs") / blob)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return commit


@pytest.fixture
def cache(tmp_path, monkeypatch):
    c = tmp_path / "hf" / "hub"
    c.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(c))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(c))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VQFORGE_HOME", str(tmp_path / "vqforge"))
    return c


def model_files(model_dir: Path) -> dict[str, bytes]:
    return {n: (model_dir / n).read_bytes() for n in ("model.yaml", "model.safetensors")}


def other_weights(tmp_path: Path) -> dict[str, bytes]:
    """The same model with other weights (a second revision)."""
    model = vqforge.load(VQ)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    vqforge.save_model(model, tmp_path / "v2")
    return model_files(tmp_path / "v2")


def test_hf_models_load_from_the_cache_offline_by_revision(cache, tmp_path):
    main_commit = put_revision(cache, "org/tiny-vq", {**model_files(VQ), "README.md": b"# card"})
    v2_commit = put_revision(cache, "org/tiny-vq", other_weights(tmp_path), ref="v2")
    scanned = hub.scan_cache_dir(cache)  # huggingface_hub reads the layout as its own
    assert [r.repo_id for r in scanned.repos] == ["org/tiny-vq"] and not scanned.warnings
    assert {r.commit_hash for r in next(iter(scanned.repos)).revisions} == {main_commit, v2_commit}

    want = vqforge.load(VQ).state_dict()
    got = vqforge.load("hf://org/tiny-vq").state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    for rev in ("v2", v2_commit):
        other = vqforge.load(f"hf://org/tiny-vq@{rev}").state_dict()
        assert not torch.equal(other["quantize.embedding.weight"], want["quantize.embedding.weight"])


def test_every_command_takes_an_hf_model(cache, tmp_path, capsys):
    fashion = Path(vqforge.__file__).parent / "bundled" / "fashion"  # a class-conditional transformer pipeline
    put_revision(cache, "org/fashion", model_files(fashion))
    code = main(["sample", "--model", "hf://org/fashion", "--class", "sneaker", "--num", "1", "--quiet",
                 "--out", str(tmp_path / "s")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "s" / "00000.png").is_file()


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("vqforge: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_missing_pickled_and_malformed_are_one_line(cache, tmp_path, capsys):
    out = str(tmp_path / "rec")
    assert main(["reconstruct", "--model", "hf://org/absent", "--data", str(PHOTOS), "--out", out]) == 2
    line = one_error(capsys)
    assert "not in the Hugging Face cache and vqforge is offline" in line and "hf download org/absent" in line
    put_revision(cache, "org/pickled", {"pytorch_model.bin": b"\x80\x04pickle", "config.json": b"{}"})
    assert main(["reconstruct", "--model", "hf://org/pickled", "--data", str(PHOTOS), "--out", out]) == 2
    assert "never pickled weights" in one_error(capsys)
    assert main(["reconstruct", "--model", "hf://just-a-name", "--data", str(PHOTOS), "--out", out]) == 2
    assert "hf://ORG/NAME" in one_error(capsys)


def make_run(run: Path) -> Path:
    """A training run as the VQGAN trainer leaves it: config, metrics, checkpoints/last.pt."""
    from vqforge.train.checkpoint import Checkpoint, RunDir

    model = vqforge.load(VQ)
    rd = RunDir(run)
    rd.save(Checkpoint(kind="vqgan", trainer="vqgan", model_config=model.config, model=model.state_dict(), step=40,
                       train_config={"train": {"data": "fashion-mnist", "max_steps": 40}}))
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"data": "fashion-mnist", "image_size": 16,
                                                               "max_steps": 40}}))
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"step": 20, "train/loss": 0.5, "val/psnr": 18.0}, {"step": 40, "train/loss": 0.4, "val/psnr": 21.25}]))
    return run


def test_push_dry_run_shows_the_files_and_the_card(cache, tmp_path, capsys, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("a dry run must not reach the Hub")

    monkeypatch.setattr(hub.HfApi, "upload_folder", no_network)
    monkeypatch.setattr(hub.HfApi, "create_repo", no_network)
    run = make_run(tmp_path / "run")
    stage = tmp_path / "stage"
    assert main(["push", str(run), "hf://me/fashion-vq", "--dry-run", "--stage", str(stage)]) == 0
    out = capsys.readouterr().out
    assert "would upload to hf://me/fashion-vq" in out and "nothing was uploaded" in out
    assert sorted(p.name for p in stage.iterdir()) == ["README.md", "model.safetensors", "model.yaml"]
    card = (stage / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "vqforge" and "vqgan" in front["tags"]
    assert "| trained on | fashion-mnist |" in card and "| steps | 40 |" in card and "| val/psnr | 21.25 |" in card
    assert 'vqforge.load("hf://me/fashion-vq")' in card
    # what would be uploaded is a model directory that loads as the run's model
    a, b = vqforge.load(run).state_dict(), vqforge.load(stage).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and, once in a Hub cache, loads by its address
    put_revision(cache, "me/fashion-vq", {n: (stage / n).read_bytes() for n in ("model.yaml", "model.safetensors")})
    assert isinstance(vqforge.load("hf://me/fashion-vq"), type(vqforge.load(run)))


def test_push_uploads_the_staged_folder(tmp_path, monkeypatch, capsys):
    """The real push calls create_repo and upload_folder with the staged files (intercepted: no network)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("VQFORGE_OFFLINE", raising=False)
    calls = {}

    def create_repo(self, repo_id, **kw):
        calls["create"] = repo_id

    def upload_folder(self, repo_id, folder_path, **kw):
        calls["upload"] = (repo_id, sorted(p.name for p in Path(folder_path).iterdir()))
        return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(hub.HfApi, "upload_folder", upload_folder)
    assert main(["push", str(VQ), "hf://me/vq"]) == 0
    assert calls == {"create": "me/vq", "upload": ("me/vq", ["README.md", "model.safetensors", "model.yaml"])}
    assert "commit/abc" in capsys.readouterr().out
