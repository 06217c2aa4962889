"""What segmentation label names mean to a person: natural colours for maps, and which label set a map uses.

* :func:`label_colours`: one colour per label, derived from its name (sky blue, grass green, water blue, sand
  beige, snow white, ...; names without a natural colour get distinct ones). The web app's palette and the demo's
  map legends both use it, so a map looks the same everywhere.
* :func:`label_set_problems`: whether a map's ids fit a model's label set: ids the set never uses, or an id
  histogram that reads far better in another common label set (an ADE20K map given to a COCO-Stuff model).
"""

from __future__ import annotations

import colorsys
import re

import numpy as np

#: name word -> colour (R, G, B); the first word of a label's name found here gives its colour
NATURAL_COLOURS: dict[str, tuple[int, int, int]] = {
    "sky": (125, 180, 235), "clouds": (222, 228, 238), "cloud": (222, 228, 238), "fog": (200, 204, 212),
    "snow": (250, 250, 252), "ice": (215, 235, 245),
    "grass": (96, 168, 64), "playingfield": (110, 170, 70), "field": (150, 175, 80), "moss": (110, 140, 60),
    "tree": (38, 104, 44), "trees": (38, 104, 44), "leaves": (62, 130, 50), "bush": (70, 120, 55),
    "plant": (80, 150, 70), "branch": (105, 85, 55), "flower": (225, 110, 170), "palm": (60, 130, 60),
    "water": (48, 110, 200), "sea": (30, 80, 170), "river": (70, 130, 205), "lake": (50, 105, 185),
    "waterdrops": (140, 180, 225), "waterfall": (170, 205, 235),
    "sand": (222, 200, 150), "beach": (222, 200, 150),
    "mountain": (125, 110, 100), "hill": (140, 150, 90), "rock": (120, 120, 120), "stone": (150, 150, 145),
    "gravel": (165, 160, 150), "dirt": (140, 100, 62), "mud": (105, 80, 55), "earth": (140, 100, 62),
    "ground": (150, 120, 85), "land": (150, 120, 85),
    "road": (85, 85, 90), "pavement": (150, 150, 155), "platform": (135, 135, 140), "railroad": (100, 90, 80),
    "path": (175, 155, 120), "bridge": (160, 110, 80),
    "building": (185, 125, 105), "house": (200, 140, 110), "skyscraper": (160, 170, 185), "roof": (150, 70, 55),
    "wall": (205, 190, 170), "fence": (165, 140, 105), "tent": (230, 160, 60), "wood": (150, 100, 52),
    "person": (235, 185, 150), "animal": (170, 120, 80), "horse": (140, 90, 50), "cow": (120, 90, 70),
    "sheep": (235, 235, 225), "bird": (90, 90, 140), "boat": (240, 240, 240),
}

#: label sets that maps commonly come in (id -> name), to recognise a map of another set
ADE20K = ("other", "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
          "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car",
          "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence",
          "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
          "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
          "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
          "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
          "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
          "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
          "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
          "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
          "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
          "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
          "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
          "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
          "clock", "flag")
KNOWN_SETS = {"ADE20K": ADE20K}
#: COCO-Stuff ids (0-based, 182 labels) that its annotations never use (the things dropped from COCO 2014)
COCO_STUFF_UNUSED = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
#: names that mean the same thing across label sets (after :func:`_word`)
SYNONYMS = {"earth": "dirt", "ground": "dirt", "land": "dirt", "field": "grass", "lake": "water",
            "trees": "tree", "stone": "rock", "playingfield": "grass"}


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^a-z]+", name.lower()) if w]


def _word(name: str) -> str:
    """A label's key word: 'sky-other' -> 'sky', 'water-other' -> 'water', ADE's 'earth' -> 'dirt'."""
    words = [w for w in _words(name) if w not in ("other", "stuff")] or _words(name) or [name]
    return SYNONYMS.get(words[0], words[0])


def distinct_colours(n: int) -> np.ndarray:
    """``n`` distinct RGB colours (n, 3) uint8, the same for every call: golden-ratio hues, varied lightness."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        s = 0.55 + 0.35 * ((i // 3) % 2)
        v = 0.95 - 0.25 * (i % 3) / 2
        out[i] = [round(c * 255) for c in colorsys.hsv_to_rgb(h, s, v)]
    return out


def natural_colour(name: str) -> tuple[int, int, int] | None:
    """The colour a person expects for a label called ``name`` (its first word with one), or None."""
    for w in _words(name):
        if w in NATURAL_COLOURS:
            return NATURAL_COLOURS[w]
    return None


def label_colours(n: int, names: list[str] | tuple[str, ...] = ()) -> np.ndarray:
    """One RGB colour per label id (n, 3) uint8: the natural colour of its name where it has one
    (:data:`NATURAL_COLOURS`), else a distinct colour (:func:`distinct_colours`)."""
    out = distinct_colours(n)
    for i, name in enumerate(list(names)[:n]):
        c = natural_colour(str(name))
        if c is not None:
            out[i] = c
    return out


def label_set_name(names: list[str] | tuple[str, ...]) -> str:
    """'COCO-Stuff' or a :data:`KNOWN_SETS` name when ``names`` are that set's, else "this model's"."""
    names = [str(n) for n in names]
    if len(names) in (182, 183) and names[:4] == ["person", "bicycle", "car", "motorcycle"]:
        return "COCO-Stuff"
    for set_name, known in KNOWN_SETS.items():
        if names == list(known) or names == list(known[1:]):
            return set_name
    return "this model's"


def label_set_problems(counts: np.ndarray, names: list[str] | tuple[str, ...], common: list[int] | tuple[int, ...]
                       ) -> list[str]:
    """What looks wrong with a map's ids for a model whose labels are ``names`` (id -> name) and whose maps
    mostly show the ``common`` ids (its card's ``common_labels``), from the map's id histogram ``counts``
    (pixels per id). Each problem is one sentence (no file name):

    * ids the model's label set never uses (beyond ``names``; COCO-Stuff's unused ids);
    * a histogram that reads far better in another :data:`KNOWN_SETS` set: at least half of the pixels are the
      model's common labels when read as that set, and at least 25 points fewer as the model's own.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0 or not names:
        return []
    present = [int(i) for i in np.flatnonzero(counts)]
    own = label_set_name(names)
    out = []
    unused = [i for i in present if i >= len(names) or (own == "COCO-Stuff" and i in COCO_STUFF_UNUSED)]
    if unused:
        shown = ", ".join(f"{i}" + (f" ({names[i]})" if i < len(names) else "") for i in unused[:5])
        which = "the COCO-Stuff labels (its maps never use them)" if own == "COCO-Stuff" else f"{own} labels"
        out.append(f"ids {shown}{' ...' if len(unused) > 5 else ''} are outside {which}: "
                   f"{counts[unused].sum() / total:.0%} of the pixels")
    common_words = {_word(str(names[i])) for i in common if 0 <= i < len(names)}
    if not common_words:
        return out
    share_own = counts[[i for i in present if i in set(common)]].sum() / total
    for set_name, known in KNOWN_SETS.items():
        if set_name == own:
            continue
        hits = [i for i in present if i < len(known) and _word(known[i]) in common_words]
        share = counts[hits].sum() / total if hits else 0.0
        if share >= 0.5 and share >= share_own + 0.25:
            top = sorted(hits, key=lambda i: -counts[i])[:3]
            as_own = ", ".join(f"{i} = {names[i]}" for i in top if i < len(names))
            out.append(f"its ids look like {set_name} labels ({', '.join(f'{i} = {known[i]}' for i in top)}: "
                       f"{share:.0%} of the pixels would be labels this model's maps usually show, against "
                       f"{share_own:.0%} read as {own} ids, where {as_own}); convert the map to {own} ids")
    return out
