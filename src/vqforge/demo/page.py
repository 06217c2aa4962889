"""The demo's report: sections of figures, each with its settings, numbers and timing, written as one
self-contained ``index.html`` (no scripts, no external files but the PNGs it shows) viewable offline."""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import write_text


@dataclass
class Figure:
    """One image on the page (``src`` relative to the page), with a caption, settings and numbers beside it.

    ``scale`` enlarges small images on screen (CSS width, pixelated), keeping the PNG at its real size.
    """

    src: str
    caption: str
    settings: dict[str, Any] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    width: int = 0  # natural width in pixels (for the on-screen size)
    scale: float = 1.0
    legend: list[tuple[str, str]] = field(default_factory=list)  # (label name, "#rrggbb") of each label a map shows


@dataclass
class Section:
    """A part of the demo: a title, a paragraph saying what is shown, its figures and numbers, and how long it took."""

    title: str
    text: str
    figures: list[Figure] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _table(d: dict[str, Any]) -> str:
    if not d:
        return ""
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
.meta{color:#666;font-size:.9em} .fig{display:inline-block;vertical-align:top;margin:.6em 1.2em .6em 0}
.fig img{image-rendering:pixelated;border:1px solid #ddd;display:block}
.cap{font-weight:600;margin:.3em 0} table{border-collapse:collapse;font-size:.85em;margin:.2em 0}
th{text-align:left;color:#555;padding:1px 8px 1px 0;font-weight:500} td{padding:1px 0}
.numbers table{font-size:.95em} .note{color:#555;font-style:italic}
.legend{font-size:.8em;max-width:520px;margin:.2em 0} .legend span{display:inline-block;margin:0 .8em .1em 0}
.legend i{display:inline-block;width:.9em;height:.9em;border:1px solid #999;vertical-align:-.1em;margin-right:.3em}
.models td,.models th{padding:2px 10px 2px 0;vertical-align:top}
"""


def _legend(items: list[tuple[str, str]]) -> str:
    if not items:
        return ""
    spans = "".join(f"<span><i style='background:{html.escape(c)}'></i>{html.escape(n)}</span>" for n, c in items)
    return f"<div class='legend'>map: {spans}</div>"


def render(title: str, intro: str, sections: list[Section], footer: dict[str, Any]) -> str:
    """The whole page as HTML text."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><p>{intro}</p>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2><p>{s.text}</p>")
        if s.seconds:
            parts.append(f"<p class='meta'>{s.seconds:.1f} s</p>")
        if s.numbers:
            parts.append(f"<div class='numbers'>{_table(s.numbers)}</div>")
        for f in s.figures:
            w = f" style='width:{round(f.width * f.scale)}px'" if f.width else ""
            parts.append(f"<div class='fig'><img src='{html.escape(f.src)}' alt='{html.escape(f.caption)}'{w}>"
                         f"<div class='cap'>{html.escape(f.caption)}</div>{_legend(f.legend)}{_table(f.numbers)}"
                         f"{_table(f.settings)}</div>")
        if s.note:
            parts.append(f"<p class='note'>{s.note}</p>")
    parts.append(f"<h2>Run</h2>{_table(footer)}</body></html>")
    return "\n".join(parts)


def write_page(out_dir: Path, title: str, intro: str, sections: list[Section], footer: dict[str, Any]) -> Path:
    """Write ``index.html`` and ``results.json`` (every section's numbers, settings and timing) into ``out_dir``."""
    write_text(out_dir / "index.html", render(title, intro, sections, footer))
    data = {"title": title, "written": time.strftime("%Y-%m-%d %H:%M:%S"), "run": footer,
            "sections": [{"title": s.title, "seconds": round(s.seconds, 2), "numbers": s.numbers,
                          "figures": [{"src": f.src, "caption": f.caption, "settings": f.settings,
                                       "numbers": f.numbers, "legend": [n for n, _ in f.legend]}
                                      for f in s.figures]} for s in sections]}
    write_text(out_dir / "results.json", json.dumps(data, indent=2, default=str) + "\n")
    return out_dir / "index.html"
