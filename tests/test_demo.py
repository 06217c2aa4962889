"""`vqforge demo` at a reduced size on the bundled models: the page, every file it references, and numbers that
show the models are the trained ones (a random model reconstructs at ~10 dB and matches classes 1 time in 10)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from vqforge import bundled
from vqforge.demo import DemoSizes, run_demo

pytestmark = pytest.mark.skipif(
    bundled.find("fashion") is None or bundled.find("landscapes") is None,
    reason="the bundled models fashion and landscapes are not in this checkout (src/vqforge/bundled/)")


def _number(text: str) -> float:
    return float(re.match(r"[-\d.]+", text).group())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    page = run_demo(out, DemoSizes.quick(), seed=0, progress=False)
    return out, page, json.loads((out / "results.json").read_text())


def test_the_page_references_only_files_that_exist_and_decode(demo):
    out, page, _ = demo
    assert page == out / "index.html"
    html = page.read_text()
    srcs = re.findall(r"""<img[^>]+src=['"]([^'"]+)['"]""", html)
    assert len(srcs) >= 7  # reconstructions, samples at two guidance scales, two landscapes, completion
    for src in srcs:
        assert not src.startswith(("/", "http")), src  # relative: the folder can be moved or zipped
        with Image.open(out / src) as im:
            im.verify()
    written = {p.relative_to(out).as_posix() for p in (out / "images").iterdir()}
    assert written == set(srcs)  # nothing written that the page does not show


def test_every_part_of_the_paper_is_on_the_page(demo):
    _, _, results = demo
    titles = [s["title"] for s in results["sections"]]
    for part in ("Reconstructions", "Class-conditional samples", "Landscapes from segmentation maps", "Completion",
                 "Sample quality"):
        assert any(part in t for t in titles), (part, titles)
    land = next(s for s in results["sections"] if "Landscapes" in s["title"])
    sliding = [f for f in land["figures"] if "window" in f["settings"]]
    assert sliding, "no sliding-window landscape"
    for f in sliding:  # larger than the 8x8-token window it was trained on
        h, w = map(int, re.search(r"\((\d+)x(\d+)\)", f["numbers"]["tokens"]).groups())
        assert h * w > 64 and max(h, w) > 8


def test_the_numbers_come_from_trained_models(demo):
    _, _, results = demo
    rec = next(s for s in results["sections"] if "Reconstructions" in s["title"])["numbers"]
    land_psnr = _number(next(v for k, v in rec.items() if k.startswith("landscapes mean PSNR")))
    fashion_psnr = _number(next(v for k, v in rec.items() if k.startswith("fashion mean PSNR")))
    assert land_psnr > 15.0 and fashion_psnr > 20.0, rec  # random weights: ~10 dB and ~7 dB
    samples = next(s for s in results["sections"] if "Class-conditional" in s["title"])["numbers"]
    guided = _number(samples["class-match rate, cfg 2"])
    assert guided >= 50.0, samples  # 10 guided samples, one per class; chance is 10%


def test_the_page_says_what_the_models_are_and_names_each_maps_labels(demo):
    from vqforge.demo.parts import ORIGINAL_MODELS

    _, page, results = demo
    html = page.read_text()
    about = next(s for s in results["sections"] if s["title"] == "The models")
    assert about is results["sections"][0]  # first, before any picture
    for said in ("parameters", "Fashion-MNIST train split", "67 photos", " h on ", ORIGINAL_MODELS, "Limits",
                 "vqforge models --available"):
        assert said in html, said
    maps = [f for s in results["sections"] for f in s["figures"]
            if s["title"].startswith(("3.", "4."))]  # every figure there shows a label map
    assert maps and all(f["legend"] for f in maps)
    assert "sky-other" in {name for f in maps for name in f["legend"]}  # label names, not ids
    # an uncertainty only where one exists: the quick demo's KID takes one subset of all its images
    quality = next(s for s in results["sections"] if "Sample quality" in s["title"])["numbers"]
    kid = next((v for k, v in quality.items() if k.startswith("KID")), None)
    assert "± 0.0000" not in html and (kid is None or "one subset: all 20 images" in kid)
