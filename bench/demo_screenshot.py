"""docs/demo.png: the README's picture of the demo page, taken in headless Chromium (Debian's, through Playwright)
from a `vqforge demo` output folder: from the heading of part 2 (class-conditional samples) to the end of the
first landscapes of part 3 (a held-out map at the trained size and by the sliding window).

    vqforge demo --out /tmp/demo && python bench/demo_screenshot.py /tmp/demo [docs/demo.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"


def main(demo: Path, out: Path, figures_of_part3: int = 3) -> None:
    page_file = (demo / "index.html").resolve()
    if not page_file.is_file():
        raise SystemExit(f"{page_file}: no demo page (run vqforge demo --out {demo} first)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 1000}, device_scale_factor=0.7)
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        box = page.evaluate("""(n) => {
            const h2 = [...document.querySelectorAll('h2')];
            const start = h2.find(h => h.textContent.startsWith('2.'));
            const part3 = h2.find(h => h.textContent.startsWith('3.'));
            let el = part3, seen = 0, end = part3;
            while (el && seen < n) { el = el.nextElementSibling; if (el && el.classList.contains('fig')) { seen++; end = el; } }
            const a = start.getBoundingClientRect(), b = end.getBoundingClientRect();
            return {y: a.top + window.scrollY - 8, bottom: b.bottom + window.scrollY + 8};
        }""", figures_of_part3)
        page.screenshot(path=str(out), full_page=True,
                        clip={"x": 0, "y": box["y"], "width": 1200, "height": box["bottom"] - box["y"]})
        browser.close()
    print(f"{out}: written")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) == 3 else "docs/demo.png"))
