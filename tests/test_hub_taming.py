"""`vqforge pull NAME` / `--model taming/NAME`: the original's released models downloaded from a real HTTP server
on 127.0.0.1 (range requests and the faults a real download meets), verified, converted once into $VQFORGE_HOME,
then sampled from. Every failure is one line and leaves nothing half-written in the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

import vqforge
from hub_support import FileServer, Route, write_taming_pair
from vqforge.cli import main
from vqforge.models.transformer import Net2NetTransformer


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """The original's two files for a small model, and a second checkpoint of the same size, other bytes."""
    d = tmp_path_factory.mktemp("original")
    config, ckpt = write_taming_pair(d / "a")
    _, other = write_taming_pair(d / "b", seed=1)
    return config.read_bytes(), ckpt.read_bytes(), other.read_bytes()


@pytest.fixture
def server(original):
    config, ckpt, _ = original
    s = FileServer({"/tiny/config.yaml": Route(config, "application/x-yaml"), "/tiny/last.ckpt": Route(ckpt)}).start()
    yield s
    s.stop()


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("VQFORGE_HOME", str(h))
    monkeypatch.delenv("VQFORGE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return h


def catalogue(home: Path, server: FileServer, **fields) -> None:
    entry = {"name": "tiny", "summary": "a small model in the original's format", "page": f"{server.url}/tiny/",
             "config_url": f"{server.url}/tiny/config.yaml", "checkpoint_url": f"{server.url}/tiny/last.ckpt", **fields}
    (home / "catalogue.yaml").write_text(yaml.safe_dump([entry]))


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The one error line (progress bars and notices aside)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("vqforge: error:")]
    assert len(lines) == 1, err
    return lines[0]


def cache_files(home: Path) -> list[str]:
    """Everything in the cache except the user's catalogue, the checksum record and download locks."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()
                  and p.name not in ("catalogue.yaml", "checksums.json") and not p.name.endswith(".lock"))


def test_pull_converts_once_and_every_command_takes_the_name(home, server, capsys, tmp_path):
    catalogue(home, server)
    code, out, err = run(capsys, "pull", "tiny")
    assert code == 0, err
    model_dir = home / "models" / "taming" / "tiny"
    assert (model_dir / "model.yaml").is_file() and (model_dir / "model.safetensors").is_file()
    assert "B/s" in err  # the progress bar shows size and rate
    assert cache_files(home) == ["models/taming/tiny/model.safetensors", "models/taming/tiny/model.yaml"]
    record = json.loads((home / "checksums.json").read_text())["taming/tiny/last.ckpt"]
    assert record["size"] == len(server.routes["/tiny/last.ckpt"].body) and len(record["sha256"]) == 64
    card = yaml.safe_load((model_dir / "model.yaml").read_text())["extra"]
    assert card["source"] == "taming/tiny" and card["converted_from"]["checkpoint"].endswith("/tiny/last.ckpt")

    n_requests = len(server.requests)
    model = vqforge.load("taming/tiny")  # converted once: no more requests
    assert isinstance(model, Net2NetTransformer) and len(server.requests) == n_requests
    code, _, err = run(capsys, "sample", "--model", "taming/tiny", "--num", "2", "--size", "16x16", "--quiet",
                       "--out", str(tmp_path / "samples"))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "samples").glob("0*.png")) == ["00000.png", "00001.png"]

    code, out, _ = run(capsys, "models", "--available")
    line = next(ln for ln in out.splitlines() if ln.startswith("taming/tiny"))
    assert "cached" in line
    assert any(ln.startswith("taming/sflckr") for ln in out.splitlines())  # the packaged catalogue too


def test_a_model_used_by_name_downloads_on_first_use(home, server, capsys, tmp_path):
    catalogue(home, server)
    code, _, err = run(capsys, "sample", "--model", "taming/tiny", "--num", "1", "--size", "16x16", "--quiet",
                       "--out", str(tmp_path / "s"))
    assert code == 0, err
    assert (home / "models" / "taming" / "tiny" / "model.yaml").is_file()


def test_an_interrupted_download_resumes_where_it_stopped(home, server, capsys):
    catalogue(home, server)
    ckpt = server.routes["/tiny/last.ckpt"]
    ckpt.cut_after = len(ckpt.body) // 3
    code, _, err = run(capsys, "pull", "tiny", "--quiet")
    assert code == 2 and "run the same command again to resume" in error_line(err)
    part = home / "downloads" / "taming" / "tiny" / "last.ckpt.part"
    assert part.stat().st_size == len(ckpt.body) // 3
    assert not (home / "models" / "taming" / "tiny").exists() and not part.with_suffix("").exists()

    code, _, err = run(capsys, "pull", "tiny", "--quiet")
    assert code == 0, err
    assert server.requests[-1] == ("/tiny/last.ckpt", f"bytes={len(ckpt.body) // 3}-")  # asked only for the rest
    assert isinstance(vqforge.load("taming/tiny"), Net2NetTransformer)


@pytest.mark.parametrize("fault, expected", [
    ("size", "the file there changed or the link is wrong"),
    ("404", "HTTP 404"),
    ("html", "sent a web page"),
])
def test_a_wrong_file_is_one_line_and_nothing_is_kept(home, server, capsys, fault, expected):
    ckpt = server.routes["/tiny/last.ckpt"]
    if fault == "size":
        catalogue(home, server, size=len(ckpt.body) + 1)
    else:
        catalogue(home, server)
    if fault == "404":
        del server.routes["/tiny/last.ckpt"]
    if fault == "html":
        server.routes["/tiny/last.ckpt"] = Route(b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html")
    code, _, err = run(capsys, "pull", "tiny", "--quiet")
    line = error_line(err)
    assert code == 2 and expected in line and "nothing was kept" in line
    assert "/tiny/last.ckpt" in line
    assert [f for f in cache_files(home) if "last.ckpt" in f] == []
    assert not (home / "models").exists()


def test_a_changed_checksum_is_refused(home, server, original, capsys):
    catalogue(home, server)
    assert run(capsys, "pull", "tiny", "--quiet")[0] == 0
    shutil.rmtree(home / "models")  # pulled again later, from a server whose file changed
    _, ckpt, other = original
    assert len(other) == len(ckpt) and other != ckpt
    server.routes["/tiny/last.ckpt"] = Route(other)
    code, _, err = run(capsys, "pull", "tiny", "--quiet")
    line = error_line(err)
    assert code == 2 and "checksum changed" in line and "nothing was kept" in line
    assert not (home / "models").exists() and [f for f in cache_files(home) if "last.ckpt" in f] == []


def test_offline_says_what_to_download_and_where(home, server, capsys, monkeypatch, tmp_path):
    catalogue(home, server)
    monkeypatch.setenv("VQFORGE_OFFLINE", "1")
    code, _, err = run(capsys, "sample", "--model", "taming/tiny", "--num", "1", "--out", str(tmp_path / "s"))
    line = error_line(err)
    dl = home / "downloads" / "taming" / "tiny"
    assert code == 2 and f"{server.url}/tiny/last.ckpt to {dl / 'last.ckpt'}" in line
    assert f"to {dl / 'config.yaml'}" in line and not server.requests
    # doing what it says works without the network
    dl.mkdir(parents=True)
    (dl / "config.yaml").write_bytes(server.routes["/tiny/config.yaml"].body)
    (dl / "last.ckpt").write_bytes(server.routes["/tiny/last.ckpt"].body)
    assert run(capsys, "pull", "tiny", "--quiet")[0] == 0 and not server.requests


def test_an_unreachable_server_and_an_unknown_name(home, capsys):
    (home / "catalogue.yaml").write_text(yaml.safe_dump([{"name": "gone", "page": "http://127.0.0.1:9/",
                                                          "config_url": "http://127.0.0.1:9/c.yaml",
                                                          "checkpoint_url": "http://127.0.0.1:9/last.ckpt"}]))
    code, _, err = run(capsys, "pull", "gone", "--quiet")
    line = error_line(err)
    assert code == 2 and "cannot reach the server" in line and "downloads/taming/gone/config.yaml" in line
    code, _, err = run(capsys, "pull", "nosuch", "--quiet")
    assert code == 2 and "not a released model of the original" in error_line(err) and "sflckr" in err


def test_the_packaged_catalogue_has_the_originals_models():
    from vqforge.hub.catalogue import CATALOGUE

    for name in ("vqgan_imagenet_f16_1024", "vqgan_imagenet_f16_16384", "vqgan_gumbel_f8", "sflckr",
                 "faceshq_transformer",
                 "drin_transformer", "coco_transformer", "ade20k_transformer", "cin_transformer"):
        m = CATALOGUE[name]
        assert m.page.startswith("https://") and m.summary
    assert CATALOGUE["sflckr"].checkpoint_url.endswith("?p=%2Fcheckpoints%2Flast.ckpt&dl=1")


def test_processes_pulling_at_once_download_once(home, server):
    """Every rank of a torchrun job may ask for the same name at once: one downloads, the others wait for it."""
    import threading

    from vqforge.api import pull

    catalogue(home, server)
    paths, errors = [], []

    def one():
        try:
            paths.append(pull("tiny", progress=False))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(paths)) == 1
    assert [p for p, _ in server.requests].count("/tiny/last.ckpt") == 1
