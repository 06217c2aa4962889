"""`vqforge serve`'s JSON API on a real server process (tiny random-weight models): jobs, results, bad input."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="vqforge serve needs fastapi (pip install 'vqforge[serve]')")
pytest.importorskip("uvicorn", reason="vqforge serve needs uvicorn")

sys.path.insert(0, str(Path(__file__).parent))
from serve_support import CLASS_NAMES, LABEL_NAMES, Server, build_models, wait_done  # noqa: E402

from vqforge.serve.forms import BadInput  # noqa: E402

LIMITS = ["--max-side", "256", "--max-count", "4", "--max-upload-mb", "1", "--max-upload-pixels", "1000000"]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    paths = build_models(tmp_path_factory.mktemp("serve_models"))
    with Server(list(paths.values()), *LIMITS) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        c.headers["X-VQForge-Token"] = c.get("/api/models").json()["token"]  # what the page sends with each POST
        yield c


def png(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colour image (H, W, 3) uint8 that a VQGAN can reconstruct roughly."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    img = np.stack([np.sin(6 * x + rng.uniform(0, 6)), np.cos(5 * y), np.sin(4 * (x + y))], -1)
    return ((img + 1) * 127.5).astype(np.uint8)


def run(c: httpx.Client, task: str, data: dict, files: dict | None = None) -> dict:
    r = c.post(f"/api/jobs/{task}", data=data, files=files)
    assert r.status_code == 202, r.text
    snap = wait_done(c, r.json()["id"])
    assert snap["state"] == "done", snap
    return snap


def result_image(c: httpx.Client, snap: dict, k: int = 0) -> Image.Image:
    r = c.get(snap["results"][k]["url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    im = Image.open(io.BytesIO(r.content))
    im.load()
    return im


# ------------------------------------------------------------------------------------------------- serving
def test_models_page_and_static_files(client):
    info = client.get("/api/models").json()
    models = {m["name"]: m for m in info["models"]}
    assert models["tinyclass"]["tasks"] == ["sample", "complete", "reconstruct"] and models["tinyclass"]["guidance"]
    assert [c["name"] for c in models["tinyclass"]["classes"]] == [f"{i}: {n}" for i, n in enumerate(CLASS_NAMES)]
    assert models["tinyclass"]["defaults"] == {"top_k": 20, "top_p": 1.0, "temperature": 1.0, "cfg": 1.5}
    assert models["tinyseg"]["defaults"] == {"top_k": 100, "top_p": 1.0, "temperature": 1.0, "cfg": 0.0}
    labels = models["tinyseg"]["labels"]
    assert [lab["id"] for lab in labels] == [3, 1, 0, 2, 4]  # the card's common labels first (9: no such label)
    assert [lab["name"] for lab in labels] == [LABEL_NAMES[i] for i in (3, 1, 0, 2, 4)]
    assert len({lab["color"] for lab in labels}) == 5
    assert models["tinyseg"]["tasks"] == ["synthesize", "complete", "reconstruct"] and not models["tinyseg"]["guidance"]
    assert models["tinyvq"]["tasks"] == ["reconstruct"] and models["tinyvq"]["kind"] == "vqgan"
    assert info["limits"]["max_side"] == 256
    page = client.get("/")
    assert page.status_code == 200 and 'id="sample-run"' in page.text
    assert "class Grid" in client.get("/static/paint.js").text
    assert "/api/jobs/{task}" in client.get("/api/openapi.json").json()["paths"]


def test_sample_size_settings_in_png_and_seed_reproducible(client):
    data = {"model": "tinyclass", "count": "2", "height": "32", "width": "48", "cfg": "2", "seed": "5",
            "top_k": "20", "class_label": "3"}
    snap = run(client, "sample", data)
    im = result_image(client, snap, 1)
    assert im.size == (48, 32)  # PIL: (W, H)
    meta = json.loads(im.text["vqforge"])
    assert (meta["seed"], meta["cfg"], meta["top_k"], meta["size"]) == (5, 2.0, 20, [32, 48]) and meta["sliding_window"]
    assert meta["class_label"] == 3 and meta["index"] == 1 and snap["results"][1]["caption"] == "3: dress"
    again = run(client, "sample", data)
    other = run(client, "sample", {**data, "seed": "6"})
    pixels = [np.asarray(result_image(client, s, 0)) for s in (snap, again, other)]
    assert np.array_equal(pixels[0], pixels[1]) and not np.array_equal(pixels[0], pixels[2])
    settings = client.get(snap["settings_url"]).json()
    assert settings["job"] == snap["id"] and settings["token_grid"] == [8, 12]


def test_api_jobs_take_the_model_cards_settings_as_the_page_does(client):
    """A job that leaves the sampling settings out runs with the ones the page starts from (the card's)."""
    info = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    snap = run(client, "sample", {"model": "tinyclass", "height": "16", "width": "16"})
    meta = json.loads(result_image(client, snap).text["vqforge"])
    assert {k: meta[k] for k in ("top_k", "top_p", "temperature", "cfg")} == info["tinyclass"]["defaults"]
    assert meta["cfg"] == 1.5 and meta["top_k"] == 20
    snap = run(client, "sample", {"model": "tinyclass", "height": "16", "width": "16", "cfg": "0", "top_k": "5"})
    meta = json.loads(result_image(client, snap).text["vqforge"])
    assert (meta["cfg"], meta["top_k"]) == (0.0, 5)  # what is given wins


def test_event_stream_reports_progress_until_done(client):
    r = client.post("/api/jobs/sample", data={"model": "tinyclass", "height": "64", "width": "64", "seed": "1"})
    job = r.json()["id"]
    snaps = []
    with client.stream("GET", f"/api/jobs/{job}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                snaps.append(json.loads(line[6:]))
    assert snaps[-1]["state"] == "done" and snaps[-1]["done"] == snaps[-1]["total"] == 256
    dones = [s["done"] for s in snaps]
    assert dones == sorted(dones) and all(s["id"] == job for s in snaps)
    assert result_image(client, snaps[-1]).size == (64, 64)


def test_synthesize_from_a_label_map_and_label_png_normalised(client):
    ids = np.zeros((24, 32), np.uint8)
    ids[:, 16:] = 3
    ids[8:16, 4:12] = 1
    snap = run(client, "synthesize", {"model": "tinyseg", "count": "2", "seed": "2"}, {"labels": ("l.png", png(ids))})
    assert result_image(client, snap, 1).size == (32, 24)
    assert json.loads(result_image(client, snap).text["vqforge"])["task"] == "synthesize"
    gray = np.repeat(ids[..., None], 3, -1)  # what a browser canvas writes: R = G = B = id
    same = run(client, "synthesize", {"model": "tinyseg", "count": "2", "seed": "2"}, {"labels": ("l.png", png(gray))})
    assert np.array_equal(np.asarray(result_image(client, snap)), np.asarray(result_image(client, same)))
    pal = Image.fromarray(ids, mode="P")
    pal.putpalette([v for i in range(256) for v in (i * 40 % 256, i * 90 % 256, 200)])
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    r = client.post("/api/labels", data={"model": "tinyseg"}, files={"labels": ("p.png", buf.getvalue())})
    assert r.status_code == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(r.content))), ids)


def test_complete_and_reconstruct(client):
    image = photo(16, 24)
    mask = np.zeros((16, 24), np.uint8)
    mask[4:8, 8:16] = 255  # 2 tokens of the f4 grid
    snap = run(client, "complete", {"model": "tinyclass", "count": "2", "class_label": "1"},
               {"image": ("p.png", png(image)), "mask": ("m.png", png(mask))})
    assert result_image(client, snap, 1).size == (24, 16)
    assert client.get(snap["settings_url"]).json()["masked_tokens"] == 2
    keep = mask == 0
    for k in range(2):  # paste-back (the default): the unmasked pixels are the photo's
        assert np.array_equal(np.asarray(result_image(client, snap, k))[keep], image[keep])
    raw = run(client, "complete", {"model": "tinyclass", "class_label": "1", "paste_back": "false"},
              {"image": ("p.png", png(image)), "mask": ("m.png", png(mask))})
    assert not np.array_equal(np.asarray(result_image(client, raw))[keep], image[keep])
    assert client.get(raw["settings_url"]).json()["paste_back"] is False
    rec = run(client, "reconstruct", {"model": "tinyclass"}, {"image": ("p.png", png(photo(18, 25)))})
    out = np.asarray(result_image(client, rec, 0)).astype(np.float64)
    cropped = photo(18, 25)[1:17, 0:24].astype(np.float64)  # centre-cropped to a multiple of 4
    assert out.shape == (16, 24, 3)
    mine = 10 * np.log10(255.0**2 / np.mean((out - cropped) ** 2))
    assert abs(mine - rec["metrics"]["psnr_db"]) < 0.2  # the PNG is rounded to 8 bits
    codes = np.asarray(result_image(client, rec, 1))
    assert codes.shape == (16, 24, 3) and (codes[::4, ::4] == codes[3::4, 3::4]).all()  # one colour per 4x4 token
    assert rec["metrics"]["n_codes"] == 32 and 1 <= rec["metrics"]["codes_used"] <= 24
    ids = np.zeros((16, 24), np.uint8)
    ids[:, 12:] = 4
    under = [run(client, "complete", {"model": "tinyseg", "seed": "1"},
                 {"image": ("p.png", png(image)), "mask": ("m.png", png(mask)), "labels": ("l.png", png(ids))})
             for _ in range(2)]  # a segmentation model completes under a label map
    pixels = [np.asarray(result_image(client, snap)) for snap in under]
    assert pixels[0].shape == (16, 24, 3) and np.array_equal(pixels[0], pixels[1])
    assert client.get(under[0]["settings_url"]).json()["mode"] == "segmentation"
    bare = run(client, "reconstruct", {"model": "tinyvq"}, {"image": ("p.png", png(photo(16, 16)))})
    assert result_image(client, bare).size == (16, 16) and bare["metrics"]["token_grid"] == [4, 4]


def test_live_preview_shows_finished_rows_then_cancel_and_keep_serving(client):
    r = client.post("/api/jobs/sample", data={"model": "tinyclass", "count": "4", "height": "256", "width": "256"})
    job = r.json()["id"]
    deadline = time.monotonic() + 60
    while "previews" not in (snap := client.get(f"/api/jobs/{job}").json()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert snap["state"] == "running" and len(snap["previews"]) == 4
    preview = np.asarray(Image.open(io.BytesIO(client.get(snap["previews"][3]).content)).convert("RGB"))
    assert preview.shape == (256, 256, 3)
    rows_done = snap["done"] // 64  # a 64x64 token grid, 4 px per token
    assert rows_done < 60 and (preview[(rows_done + 1) * 4:] == 128).all()  # rows not finished: mid-grey
    assert client.post(f"/api/jobs/{job}/cancel").status_code == 200
    snap = wait_done(client, job, timeout=30)
    assert snap["state"] == "cancelled" and snap["done"] < snap["total"] and "results" not in snap
    assert client.get(f"/api/jobs/{job}/result/0.png").status_code == 404
    run(client, "sample", {"model": "tinyclass"})


def test_bundled_models_load_by_name_with_their_cards(tmp_path, monkeypatch):
    import torch

    from vqforge import bundled
    from vqforge.serve.engine import bundled_names, load_engines

    paths = build_models(tmp_path / "made")
    (tmp_path / "bundled").mkdir()
    paths["tinyclass"].rename(tmp_path / "bundled" / "fashion")
    monkeypatch.setattr(bundled, "BUNDLED_DIR", tmp_path / "bundled")
    assert bundled_names() == ["fashion"]
    engines = load_engines(["fashion", str(paths["tinyseg"])], torch.device("cpu"))
    assert list(engines) == ["fashion", "tinyseg"]
    info = engines["fashion"].describe(256)
    assert info["classes"][3]["name"] == "3: dress" and info["defaults"]["cfg"] == 1.5


def test_sizes_offered_are_the_ones_the_model_can_sample_at():
    import torch

    from vqforge.models.conditioning import SegmentationConfig
    from vqforge.serve.engine import Engine
    from vqforge.serve.forms import JobSettings
    from test_sampling import tiny_net, tiny_vq

    # f4 image tokens under an f8 segmentation stage: only multiples of 8 px have whole condition tokens.
    coarse = tiny_net(SegmentationConfig(n_labels=5, cond_stage=tiny_vq(5, ch_mult=(1, 2, 2, 2))), block=128)
    sides = Engine("coarse", coarse, torch.device("cpu")).sides(256)
    assert sides["height"] == sides["width"] and {16, 24, 32, 64, 256} <= set(sides["height"])
    assert all(side % 8 == 0 for side in sides["height"]) and 20 not in sides["height"]
    fine = Engine("fine", tiny_net(SegmentationConfig(n_labels=5, cond_stage=tiny_vq(5))), torch.device("cpu"))
    assert 20 in fine.sides(256)["height"] and max(fine.sides(100)["width"]) == 96
    engine = Engine("coarse", coarse, torch.device("cpu"))
    for side in sides["height"]:  # every size the page offers passes the server's own check
        assert engine.check("synthesize", JobSettings("coarse"), (side, 16)) == (side, 16)
    with pytest.raises(BadInput, match="20x16"):
        engine.check("synthesize", JobSettings("coarse"), (20, 16))


def test_grayscale_model_samples_completes_and_reconstructs_gray(client):
    info = {m["name"]: m for m in client.get("/api/models").json()["models"]}["tinygray"]
    assert info["channels"] == 1 and info["tasks"] == ["sample", "complete", "reconstruct"]
    assert max(info["sides"]["height"]) == max(info["sides"]["width"]) == 32  # the card's max_scale 2: 2 x 16 px
    assert info["trained_for"] == {"size": [32, 32], "why": "trained on whole 16x16 images"}
    # the card's "cfg"; no bool (top_k: True is not a number), no unknown keys
    assert info["defaults"] == {"top_k": 100, "top_p": 1.0, "temperature": 0.9, "cfg": 3.0}
    snap = run(client, "sample", {"model": "tinygray", "class_label": "2", "height": "16", "width": "32"})
    assert result_image(client, snap).mode == "L" and result_image(client, snap).size == (32, 16)
    mask = np.zeros((16, 24), np.uint8)
    mask[:8] = 255
    image = photo(16, 24)  # an RGB photo: the model gets its gray version
    gray = np.asarray(Image.fromarray(image).convert("L"))
    outputs = []
    for sent in (image, gray):
        snap = run(client, "complete", {"model": "tinygray", "class_label": "0", "seed": "3"},
                   {"image": ("p.png", png(sent)), "mask": ("m.png", png(mask))})
        rec = run(client, "reconstruct", {"model": "tinygray"}, {"image": ("p.png", png(sent))})
        outputs.append([np.asarray(result_image(client, s)) for s in (snap, rec)])
        assert outputs[-1][0].shape == outputs[-1][1].shape == (16, 24) and rec["metrics"]["token_grid"] == [4, 6]
    assert all(np.array_equal(a, b) for a, b in zip(*outputs))


# ------------------------------------------------------------------------------------------------ bad input
LABELS_BAD = np.full((16, 16), 7, np.uint8)
COLOURED = np.zeros((16, 16, 3), np.uint8) + np.array([255, 0, 0], np.uint8)
BIG = np.zeros((1100, 1000), np.uint8)  # 1.1 Mpx, a few kB as PNG
BAD = [
    ("complete", {"model": "tinyclass"}, {"image": b"hello, not an image", "mask": b"x"}, 400, "image: not an image"),
    ("complete", {"model": "tinyclass"}, {"image": png(photo(16, 16))[:60], "mask": b"x"}, 400, "image: damaged PNG"),
    ("reconstruct", {"model": "tinyclass"}, {"image": png(BIG)}, 413, "more than the server accepts"),
    ("reconstruct", {"model": "tinyclass"}, {"image": bytes(1_200_000)}, 413, "larger than the server accepts"),
    ("synthesize", {"model": "tinyseg"}, {"labels": png(LABELS_BAD)}, 400, "label 7 is out of range"),
    ("synthesize", {"model": "tinyseg"}, {"labels": png(COLOURED)}, 400, "got colours"),
    ("synthesize", {"model": "tinyseg"}, {"labels": png(np.zeros((16, 16), np.uint8), "JPEG")}, 400, "lossless"),
    ("synthesize", {"model": "tinyseg"}, {"labels": png(np.zeros((18, 16), np.uint8))}, 400, "multiple"),
    ("synthesize", {"model": "tinyseg"}, {}, 400, "labels: missing file"),
    ("synthesize", {"model": "tinyseg"}, {"labels": png(np.zeros((260, 16), np.uint8))}, 413, "--max-side 256"),
    ("sample", {"model": "tinyclass", "height": "100000", "width": "16"}, None, 400, "height: 100000 is too large: an output side is 1 to 256 px"),
    ("sample", {"model": "tinyclass", "height": "30", "width": "32"}, None, 400, "multiple of the model's"),
    ("sample", {"model": "tinyclass", "height": "-16", "width": "16"}, None, 400, "height: -16 is too small"),
    ("sample", {"model": "tinyclass", "height": "32"}, None, 400, "both or neither"),
    ("sample", {"model": "tinyclass", "count": "1000"}, None, 400, "count: 1000 is too large: ask for 1 to 4 images"),
    ("sample", {"model": "tinyclass", "top_p": "nan"}, None, 400, "top_p: expected a finite number"),
    ("sample", {"model": "tinyclass", "top_k": "-5"}, None, 400, "top_k: -5 is too small: 0 turns top-k off"),
    ("sample", {"model": "tinyclass", "seed": "-1"}, None, 400, "seed: -1 is too small: a seed is a whole number"),
    ("complete", {"model": "tinyclass", "paste_back": "maybe"}, None, 400, "paste_back: expected true or false"),
    ("sample", {"model": "tinyclass", "seed": "abc"}, None, 400, "seed: expected a whole number"),
    ("sample", {"model": "tinyclass", "class_label": "5"}, None, 400, "class_label: 5 is out of range"),
    ("sample", {"model": "tinygray", "height": "48", "width": "16"}, None, 400,
     "size 48x16: tinygray was trained for sizes up to 32x32 (trained on whole 16x16 images)"),
    ("sample", {"model": "tinyclass", "colour": "red"}, None, 400, "unknown field 'colour'"),
    ("sample", {"model": "nosuchmodel"}, None, 400, "unknown model 'nosuchmodel'"),
    ("sample", {"model": "tinyseg"}, None, 400, "cannot sample"),
    ("sample", {"model": "tinyvq"}, None, 400, "model 'tinyvq' (vqgan) cannot sample; it can: reconstruct"),
    ("synthesize", {"model": "tinyseg", "cfg": "2"}, {"labels": png(np.zeros((16, 16), np.uint8))}, 400, "guidance"),
    ("complete", {"model": "tinyclass"}, {"image": png(photo(16, 16)), "mask": png(np.zeros((16, 16), np.uint8))},
     400, "mask: the mask is empty"),
    ("complete", {"model": "tinyclass"}, {"image": png(photo(16, 16)), "mask": png(np.zeros((8, 16), np.uint8))},
     400, "mask: 8x16 px, but the image is 16x16"),
    ("complete", {"model": "tinyclass"}, {"image": png(photo(18, 16)), "mask": png(np.zeros((18, 16), np.uint8))},
     400, "not a multiple"),
    ("complete", {"model": "tinyseg"}, {"image": png(photo(16, 16)), "mask": png(np.full((16, 16), 255, np.uint8))},
     400, "labels: missing file"),
    ("complete", {"model": "tinyseg"}, {"image": png(photo(16, 16)), "mask": png(np.full((16, 16), 255, np.uint8)),
                                        "labels": png(np.zeros((16, 8), np.uint8))}, 400, "labels: 16x8 px, but the image"),
    ("complete", {"model": "tinyclass"}, {"image": png(photo(16, 16)), "mask": png(np.full((16, 16), 255, np.uint8)),
                                          "labels": png(np.zeros((16, 16), np.uint8))}, 400, "takes no labels file"),
    ("complete", {"model": "tinyseg"}, {"image": png(photo(16, 16)), "mask": png(np.full((16, 16), 255, np.uint8)),
                                        "labels": png(LABELS_BAD)}, 400, "labels: label 7 is out of range"),
    ("teleport", {"model": "tinyclass"}, None, 404, "unknown task"),
]


@pytest.mark.parametrize("task,data,files,status,message", BAD, ids=[f"{b[0]}-{b[4][:24]}" for b in BAD])
def test_bad_input_is_one_clear_4xx_line_and_the_server_keeps_serving(client, task, data, files, status, message):
    r = client.post(f"/api/jobs/{task}", data=data, files={k: (k + ".png", v) for k, v in (files or {}).items()})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error and "\n" not in error and "Traceback" not in error
    assert client.get("/api/models").status_code == 200


def test_other_requests_refused_cleanly(client):
    r = client.post("/api/jobs/sample", json={"model": "tinyclass"})
    assert r.status_code == 415 and "form" in r.json()["error"]
    r = client.get("/api/jobs/not-a-job")
    assert r.status_code == 404 and "no job" in r.json()["error"]
    r = client.get("/api/models", headers={"Host": "evil.example"})  # DNS rebinding: only loopback names answer
    assert r.status_code == 400
    assert client.get("/api/models").status_code == 200


# ------------------------------------------------------------------------------------------ other sites
def test_a_cross_site_form_post_is_refused(client):
    """The issue's case: a page on http://evil.example made the browser POST a form (no preflight) and got 202.
    Now any POST needs this server's origin and its per-process token; nothing is queued otherwise."""
    form = {"model": "tinyclass", "count": "1"}
    bare = httpx.Client(base_url=str(client.base_url), timeout=60)  # no token: what another site's form sends
    r = bare.post("/api/jobs/sample", data=form, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin request refused" in r.json()["error"], r.text
    r = client.post("/api/jobs/sample", data=form, headers={"Origin": "http://evil.example"})  # even with the token
    assert r.status_code == 403
    r = client.post("/api/jobs/sample", data=form, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and "cross-site" in r.json()["error"]
    r = bare.post("/api/jobs/sample", data=form)  # a script without the token
    assert r.status_code == 403 and "X-VQForge-Token" in r.json()["error"] and "/api/models" in r.json()["error"]
    r = bare.post("/api/jobs/sample", data=form, headers={"X-VQForge-Token": "guessed"})
    assert r.status_code == 403
    assert bare.post("/api/labels", data={"model": "tinyseg"}).status_code == 403
    assert bare.post("/api/jobs/nope/cancel").status_code == 403
    own = str(client.base_url).rstrip("/")
    r = client.post("/api/jobs/sample", data=form, headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 202, r.text  # the page itself: same origin, with the token
    wait_done(client, r.json()["id"])


def test_every_response_forbids_framing_and_sniffing_and_sets_a_policy(client):
    page = client.get("/")
    token = client.headers["X-VQForge-Token"]
    assert f'<meta name="vqforge-token" content="{token}">' in page.text  # the page carries the token
    for r in (page, client.get("/api/models"), client.get("/static/app.js"), client.get("/api/jobs/nope"),
              httpx.post(str(client.base_url).rstrip("/") + "/api/jobs/sample", headers={"Origin": "http://evil.example"})):
        assert r.headers["x-frame-options"] == "DENY", r.url
        assert r.headers["x-content-type-options"] == "nosniff"
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
