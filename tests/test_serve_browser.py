"""`vqforge serve` driven in headless Chromium (Debian's, through Playwright): sample, paint + synthesise, complete.

Skips with a reason where Chromium or Playwright's Python package is absent (`.ci/run` installs both).
Set VQFORGE_UPDATE_SCREENSHOT=1 to rewrite docs/serve.png from the screenshot taken here.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="vqforge serve needs fastapi (pip install 'vqforge[serve]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
CHROMIUM = os.environ.get("VQFORGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set VQFORGE_CHROMIUM)",
                allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parent))
from serve_support import Server, build_models  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    paths = build_models(tmp_path_factory.mktemp("serve_models"))
    with Server(list(paths.values()), "--max-side", "256") as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


# Keeps what the page sends in its forms (Chromium does not hand file uploads to request listeners).
RECORD_FORMS = """
window.sentForms = {};
const realFetch = window.fetch;
window.fetch = async (url, options) => {
  if (options && options.body instanceof FormData) {
    const sent = {};
    for (const [k, v] of options.body.entries())
      sent[k] = v instanceof Blob ? Array.from(new Uint8Array(await v.arrayBuffer())) : v;
    window.sentForms[String(url)] = sent;
  }
  return realFetch(url, options);
};
"""


@contextlib.contextmanager
def open_page(browser, url: str):
    """A fresh tab on the app at ``url``; fails the test on any script error, console error or 4xx/5xx."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.add_init_script(RECORD_FORMS)
    tab = context.new_page()
    problems = []
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    tab.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    tab.goto(url + "/")
    tab.wait_for_selector("#model option", state="attached")
    yield tab
    context.close()
    assert not problems, problems


@pytest.fixture
def page(browser, server):
    with open_page(browser, server.url) as tab:
        yield tab


BUNDLED = ("fashion", "landscapes")


@pytest.fixture(scope="module")
def bundled_page(browser):
    """The page on the bundled models (``vqforge.load("fashion")``...); skips until they are installed."""
    from vqforge import bundled

    missing = [name for name in BUNDLED if bundled.find(name) is None]
    if missing:
        pytest.skip(f"bundled models not installed: {', '.join(missing)} (src/vqforge/bundled/)")
    with Server(list(BUNDLED), threads=2) as s, open_page(browser, s.url) as tab:
        yield tab


def choose(page, model: str, task: str, height: int, width: int) -> None:
    page.select_option("#model", model)
    page.click(f"#tabs button[data-task={task}]")
    page.select_option("#height", str(height))  # fails unless the page offers the size
    page.select_option("#width", str(width))


def wait_results(page, n: int, timeout: float = 90_000) -> list[list[int]]:
    """Wait until the job is done and its n images have loaded; their (width, height)."""
    page.wait_for_selector("#results[data-state=done]", state="attached", timeout=timeout)
    page.wait_for_function(f"""() => {{ const im = [...document.querySelectorAll('img.result')];
        return im.length === {n} && im.every(i => i.complete && i.naturalWidth > 0); }}""", timeout=20_000)
    return page.eval_on_selector_all("img.result", "els => els.map(e => [e.naturalWidth, e.naturalHeight])")


def stroke(page, selector: str, points: list[tuple[float, float]]) -> None:
    """Drag the mouse through ``points`` given as fractions of the element's box."""
    box = page.locator(selector).bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


def sent_images(page, url: str) -> dict[str, np.ndarray]:
    """The files of the last form the page posted to ``url``, decoded as images."""
    sent = page.evaluate("url => window.sentForms[url]", url)
    return {k: np.asarray(Image.open(io.BytesIO(bytes(v)))) for k, v in sent.items() if isinstance(v, list)}


def screenshot(page, models: str) -> None:
    """The page as a person sees it; with VQFORGE_UPDATE_SCREENSHOT=bundled (or tiny), docs/serve.png for the
    README, taken on those models."""
    shot = page.screenshot()
    assert Image.open(io.BytesIO(shot)).size == (1280, 860)
    if os.environ.get("VQFORGE_UPDATE_SCREENSHOT") == models:
        (REPO / "docs" / "serve.png").write_bytes(shot)


def one_channel(image: np.ndarray) -> np.ndarray:
    """A gray image the page sent (R = G = B when it has channels) as (H, W)."""
    return image[..., 0] if image.ndim == 3 else image


def brush_and_complete(page, png: bytes, width: int, points: list[tuple[float, float]], count: int) -> dict:
    """Upload the photo ``png`` on the Complete tab, brush the mask through ``points``, complete ``count`` images;
    the files the page sent, decoded."""
    page.set_input_files("#complete-file", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": png}])
    page.wait_for_function(f"() => document.getElementById('complete-canvas').width === {width}")
    stroke(page, "#complete-canvas", points)
    page.fill("#count", str(count))
    page.click("#complete-run")
    page.wait_for_selector("#results[data-job]", state="attached")
    return sent_images(page, "/api/jobs/complete")


def test_click_sample_and_see_images_of_the_requested_size(page):
    choose(page, "tinyclass", "sample", 32, 48)
    assert page.input_value("#top_k") == "20" and page.input_value("#cfg") == "1.5"  # the model card's settings
    page.fill("#count", "2")
    page.select_option("#class_label", "3")
    page.click("#sample-run")
    assert wait_results(page, 2) == [[48, 32], [48, 32]]
    assert page.inner_text("#result-0 figcaption").startswith("3: dress")
    href = page.get_attribute("#result-1 a", "href")
    job = page.get_attribute("#results", "data-job")
    assert href == f"/api/jobs/{job}/result/1.png" and page.get_attribute("#result-1 a", "download").endswith("-1.png")
    assert "settings.json" in page.inner_text("#metrics")


def test_paint_two_labels_and_synthesise(page):
    choose(page, "tinyseg", "synthesize", 32, 32)
    assert page.get_attribute(".swatch[aria-pressed=true]", "data-label") == "1"  # the card's second common label
    first = page.evaluate("() => state.model.labels.find(l => l.id === 3).color")  # "#rrggbb"
    pixel = page.eval_on_selector("#seg-canvas", "c => [...c.getContext('2d').getImageData(0, 0, 1, 1).data]")
    assert pixel == [*bytes.fromhex(first[1:]), 255]  # a new map is filled with the first common label
    page.click(".swatch[data-label='0']")
    page.click("#seg-fill")
    page.select_option("#seg-brush", "8")
    page.click(".swatch[data-label='2']")
    stroke(page, "#seg-canvas", [(0.1, 0.1), (0.4, 0.5), (0.1, 0.9)])
    page.click(".swatch[data-label='4']")
    stroke(page, "#seg-canvas", [(0.9, 0.1), (0.6, 0.5), (0.9, 0.9)])
    page.fill("#count", "2")
    page.click("#synthesize-run")
    page.wait_for_selector("#results[data-job]", state="attached")
    labels = sent_images(page, "/api/jobs/synthesize")["labels"]
    assert labels.shape[:2] == (32, 32)
    ids = one_channel(labels)
    assert set(np.unique(ids)) == {0, 2, 4}
    assert (ids[:, :12] == 2).sum() > 40 and (ids[:, 20:] == 4).sum() > 40 and (ids[:, :12] == 4).sum() == 0
    assert wait_results(page, 2) == [[32, 32], [32, 32]]
    screenshot(page, "tiny")


def test_mask_and_complete_an_uploaded_photo(page):
    choose(page, "tinyclass", "complete", 16, 24)
    page.click("#complete-run")
    assert page.inner_text("#banner") == "choose a photo first"  # said on the page, nothing sent
    y, x = np.mgrid[0:40, 0:60]
    photo = np.stack([x * 4, y * 6, (x + y) * 2], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="PNG")
    page.select_option("#mask-brush", "4")
    sent = brush_and_complete(page, buf.getvalue(), 24, [(0.2, 0.5), (0.8, 0.5)], count=2)
    mask = one_channel(sent["mask"])
    assert sent["image"].shape[:2] == (16, 24) and mask.shape == (16, 24)
    assert mask[8].max() == 255 and mask[0].max() == 0 and mask[15].max() == 0  # a horizontal stroke
    assert wait_results(page, 2) == [[24, 16], [24, 16]]


def test_complete_a_photo_under_the_painted_map(page):
    choose(page, "tinyseg", "synthesize", 16, 24)
    page.click(".swatch[data-label='3']")
    page.click("#seg-fill")
    page.click("#tabs button[data-task=complete]")
    assert page.is_visible("#complete-map")  # says which map the completion follows
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(buf, format="PNG")
    sent = brush_and_complete(page, buf.getvalue(), 24, [(0.5, 0.1), (0.5, 0.9)], count=1)
    labels = one_channel(sent["labels"])
    assert labels.shape == sent["image"].shape[:2] == (16, 24) and (labels == 3).all()
    assert wait_results(page, 1) == [[24, 16]]


def test_two_tabs_follow_their_own_jobs_and_cancel(page, browser, server):
    other = browser.new_context().new_page()
    other.goto(server.url + "/")
    other.wait_for_selector("#model option", state="attached")
    choose(page, "tinyclass", "sample", 256, 256)  # a long job, to cancel
    page.fill("#count", "4")
    choose(other, "tinyclass", "sample", 16, 32)
    page.click("#sample-run")
    page.wait_for_selector("#results[data-state=running]", state="attached")
    page.wait_for_function("() => [...document.querySelectorAll('img.result')].some(i => i.naturalWidth === 256)",
                           timeout=120_000)  # the first live preview; slow when the machine is loaded
    page.click("#tabs button[data-task=complete]")  # another task tab of the same page: told what it waits for
    assert page.inner_text("#busy-note") == ("waiting for the tinyclass sample job in the Sample tab (cancel it there, "
                                             "or wait)")
    assert page.is_disabled("#complete-run") and not page.is_visible("#results")  # not the other job's preview
    page.click("#tabs button[data-task=sample]")
    assert not page.is_visible("#busy-note") and page.is_visible("#results")
    other.click("#sample-run")
    other.wait_for_selector("#results[data-state=queued]", state="attached")
    assert other.inner_text("#progress-text").startswith("waiting")
    page.click("#cancel")
    page.wait_for_selector("#results[data-state=cancelled]", state="attached")
    assert wait_results(other, 1) == [[32, 16]]
    assert page.get_attribute("#results", "data-job") != other.get_attribute("#results", "data-job")
    assert page.locator("img.result").count() == 4  # the previews of its own job only
    other.context.close()


def rgb(page, selector: str) -> tuple[int, int, int]:
    """The computed background colour of ``selector`` as (r, g, b)."""
    css = page.eval_on_selector(selector, "e => getComputedStyle(e).backgroundColor")  # "rgb(r, g, b)"
    return tuple(int(v) for v in css[css.index("(") + 1:-1].split(",")[:3])


def looks(colour: tuple[int, int, int], what: str) -> bool:
    """Whether an RGB colour is what a person calls ``what``."""
    r, g, b = colour
    return {"blue": b > r + 40 and b > g, "green": g > r + 30 and g > b + 30, "white": min(r, g, b) > 235,
            "beige": r > 190 and g > 160 and r > b + 40 and g > b + 20, "grey": max(r, g, b) - min(r, g, b) < 12}[what]


def test_palette_paints_labels_in_their_natural_colours(page):
    choose(page, "tinyseg", "synthesize", 16, 16)
    names = dict(page.eval_on_selector_all(".swatch", "els => els.map(e => [e.textContent, Number(e.dataset.label)])"))
    for name, what in (("sky", "blue"), ("grass", "green"), ("tree", "green"), ("water", "blue"), ("rock", "grey")):
        assert looks(rgb(page, f".swatch[data-label='{names[name]}'] i"), what), name
        page.click(f".swatch[data-label='{names[name]}']")
        page.click("#seg-fill")  # the map shows the same colour as the swatch
        pixel = page.eval_on_selector("#seg-canvas", "c => [...c.getContext('2d').getImageData(0, 0, 1, 1).data]")
        assert tuple(pixel[:3]) == rgb(page, f".swatch[data-label='{names[name]}'] i")


def test_seed_advances_after_each_run_unless_kept(page):
    choose(page, "tinyclass", "sample", 16, 16)
    page.fill("#seed", "7")
    seeds = []
    for keep in (False, False, True, True):
        page.set_checked("#seed-keep", keep)
        page.click("#sample-run")
        page.wait_for_selector("#results[data-state=done]", state="attached")
        seeds.append(int(page.evaluate("() => window.sentForms['/api/jobs/sample'].seed")))
    assert seeds == [7, 8, 9, 9] and page.input_value("#seed") == "9"  # each run new images, kept: the same


def test_completing_under_an_untouched_map_warns_first(page):
    choose(page, "tinyseg", "complete", 16, 16)
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buf, format="PNG")
    page.set_input_files("#complete-file", files=[{"name": "p.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    stroke(page, "#complete-canvas", [(0.5, 0.1), (0.5, 0.9)])
    page.click("#complete-run")
    warning = page.inner_text("#complete-untouched")
    assert page.is_visible("#complete-untouched") and warning.startswith("The label map of Paint & synthesise is "
                                                                         "untouched (all water)")
    assert "/api/jobs/complete" not in page.evaluate("() => Object.keys(window.sentForms)")  # nothing sent yet
    page.click("#complete-run")  # again: completes under the map as it is
    assert wait_results(page, 1) == [[16, 16]] and not page.is_visible("#complete-untouched")
    page.click("#tabs button[data-task=synthesize]")
    page.click(".swatch[data-label='0']")
    page.click("#seg-fill")  # a painted map: no warning
    page.click("#tabs button[data-task=complete]")
    page.click("#complete-run")
    page.wait_for_selector("#results[data-state=done]", state="attached")
    assert not page.is_visible("#complete-untouched")
    assert (one_channel(sent_images(page, "/api/jobs/complete")["labels"]) == 0).all()


def test_sizes_stop_at_what_each_model_was_trained_for(page):
    choose(page, "tinygray", "sample", 16, 32)
    heights = [int(v) for v in page.eval_on_selector_all("#height option", "els => els.map(e => e.value)")]
    assert max(heights) == 32  # its card: trained for up to 2x its 16 px
    assert "up to 32×32: trained on whole 16x16 images" in page.inner_text("#size-note")
    page.select_option("#model", "tinyclass")  # no such limit on its card: up to the server's --max-side
    assert max(int(v) for v in page.eval_on_selector_all("#height option", "els => els.map(e => e.value)")) == 256
    assert "up to" not in page.inner_text("#size-note")


def test_bundled_fashion_samples_a_class_with_its_card_settings(bundled_page):
    from vqforge import bundled

    page = bundled_page
    card = bundled.find("fashion").card.get("sampling", {})
    page.select_option("#model", "fashion")
    for axis in ("height", "width"):  # trained on whole 28x28 images: nothing larger offered
        assert max(page.eval_on_selector_all(f"#{axis} option", "els => els.map(e => Number(e.value))")) == 28
    choose(page, "fashion", "sample", 28, 28)
    if "top_k" in card:
        assert page.input_value("#top_k") == str(card["top_k"])
    assert page.locator("#class_label option").count() == 11  # every class in turn + the 10 classes
    page.select_option("#class_label", "7")
    page.fill("#count", "2")
    page.click("#sample-run")
    assert wait_results(page, 2, timeout=300_000) == [[28, 28], [28, 28]]
    assert page.inner_text("#result-0 figcaption").startswith("7")


def test_bundled_landscapes_paint_two_labels_and_synthesise(bundled_page):
    page = bundled_page
    choose(page, "landscapes", "synthesize", 64, 128)
    labels = page.eval_on_selector_all(".swatch", "els => els.map(e => [Number(e.dataset.label), e.textContent])")
    assert sorted(i for i, _ in labels) == list(range(182))
    sky, grass = 156, 123  # COCO-Stuff ids (0-based)
    for label, what in ((sky, "blue"), (grass, "green"), (154, "blue"), (153, "beige"), (158, "white")):
        assert looks(rgb(page, f".swatch[data-label='{label}'] i"), what), dict(labels)[label]  # sea, sand, snow
    sky_name = dict(labels)[sky]
    page.fill("#palette-filter", sky_name)  # 182 labels: found by name
    assert sky_name in page.locator(".swatch:visible").all_inner_texts()
    page.click(f".swatch[data-label='{sky}']")
    page.click("#seg-fill")
    page.fill("#palette-filter", "")
    page.click(f".swatch[data-label='{grass}']")
    page.select_option("#seg-brush", "32")
    page.fill("#count", "1")
    stroke(page, "#seg-canvas", [(0.0, 0.8), (0.5, 0.7), (1.0, 0.8)])
    page.click("#synthesize-run")
    page.wait_for_selector("#results[data-job]", state="attached")
    ids = sent_images(page, "/api/jobs/synthesize")["labels"]
    ids = one_channel(ids)
    assert ids.shape == (64, 128) and set(np.unique(ids)) == {sky, grass}
    assert wait_results(page, 1, timeout=300_000) == [[128, 64]]
    screenshot(page, "bundled")
