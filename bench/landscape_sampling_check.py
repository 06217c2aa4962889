"""Does a landscape transformer sample well through the sliding window? The check a landscape model passes before it
ships (issue 24: a transformer whose validation loss looked fine drew painted maps dark and lost the held-out maps'
bands at larger sizes; the validation rows are trained-size crops and never see the sliding window).

For each model (a bundled name, a run directory or a checkpoint) it samples, with the same seeds for every model:

* **painted maps**, as a user paints them in ``vqforge serve``: a sky label over the top 34 of 64 rows and a ground
  label under it, at 64 x 128 px (a window sliding sideways), for each sky x ground pair of ``--skies`` and
  ``--grounds``; per sample the mean brightness (0..255) of the whole image, of its sky rows and of its ground rows,
  and whether the sky came out dark (its mean under ``--dark``: a night where the map says day);
* **held-out maps** (default: the 4 bundled for the demo, never trained on) at each ``--sizes``, as contact sheets.

It writes one PNG per model and kind under ``--out`` (look at them: brightness does not say whether a sea band is
where the map puts it) and a JSON of the numbers, and prints a line per model: dark skies per sky x ground pair.

    PYTHONPATH=src python bench/landscape_sampling_check.py --model landscapes RUN/checkpoints/best.pt --out check/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

HELD_OUT_MAPS = REPO / "src" / "vqforge" / "demo_assets" / "segmentations"
SKY_ROWS = 34  # of 64: the painted horizon, a little below the middle


def painted_map(names: list[str], sky: str, ground: str, hw: tuple[int, int] = (64, 128)) -> np.ndarray:
    """A label map (H, W) of ``sky`` over ``ground`` (label names of the model's label set)."""
    for label in (sky, ground):
        if label not in names:
            raise SystemExit(f"label {label!r} is not in the model's label set")
    m = np.full(hw, names.index(sky), np.int64)
    m[hw[0] * SKY_ROWS // 64:] = names.index(ground)
    return m


def check_model(model: str, args, out: Path) -> dict:
    """Sample ``model`` on the painted and held-out maps; write its sheets; return its numbers."""
    import vqforge

    from vqforge.api import model_card

    net = vqforge.load(model)
    # a bundled model's card names its labels; a run or checkpoint takes those of --labels-from
    names = list((getattr(net, "card", None) or {}).get("label_names") or model_card(args.labels_from)["label_names"])
    tag = "".join(c if c.isalnum() else "_" for c in model).strip("_")[-60:]
    result: dict = {"model": model, "painted": [], "held_out": []}
    rows = []
    for sky in args.skies:
        for ground in args.grounds:
            mp = torch.from_numpy(painted_map(names, sky, ground))
            ims = [np.asarray(vqforge.sample(net, n=1, cond=mp, size=(64, 128), seed=s, top_k=args.top_k)[0]
                              .convert("RGB")) for s in args.seeds]
            h = ims[0].shape[0] * SKY_ROWS // 64
            stats = [{"seed": s, "mean": round(float(a.mean()), 1), "sky": round(float(a[:h].mean()), 1),
                      "ground": round(float(a[h:].mean()), 1)} for s, a in zip(args.seeds, ims)]
            dark = sum(st["sky"] < args.dark for st in stats)
            result["painted"].append({"sky": sky, "ground": ground, "samples": stats, "dark_skies": dark})
            rows.append(np.concatenate(ims, 1))
    Image.fromarray(np.concatenate(rows, 0)).save(out / f"{tag}_painted.png")
    maps = sorted(Path(args.maps).glob("*.png"))[:args.n_maps]
    for size in args.sizes:
        sheet = []
        for path in maps:
            ims = [np.asarray(vqforge.sample(net, n=1, cond=str(path), size=size, seed=s, top_k=args.top_k)[0]
                              .convert("RGB")) for s in args.seeds[:2]]
            sheet.append(np.concatenate(ims, 1))
            result["held_out"].append({"map": path.name, "size": list(size),
                                       "means": [round(float(a.mean()), 1) for a in ims]})
        Image.fromarray(np.concatenate(sheet, 0)).save(out / f"{tag}_{size[0]}x{size[1]}.png")
    return result


def size_arg(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", default=["landscapes"], help="bundled names, run directories or checkpoints")
    ap.add_argument("--out", default="landscape-check", help="folder for the sheets and check.json")
    ap.add_argument("--skies", nargs="+", default=["sky-other", "clouds"])
    ap.add_argument("--grounds", nargs="+", default=["grass", "sea", "mountain", "tree", "sand"])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(4)))
    ap.add_argument("--sizes", type=size_arg, nargs="*", default=[(128, 168), (160, 208)], help="held-out map sizes")
    ap.add_argument("--maps", default=str(HELD_OUT_MAPS))
    ap.add_argument("--n-maps", type=int, default=4)
    ap.add_argument("--labels-from", default="landscapes", help="whose card names the labels of a run's maps")
    ap.add_argument("--top-k", type=int, default=30, help="the bundled card's")
    ap.add_argument("--dark", type=float, default=70.0, help="a sky darker than this (0..255) counts as dark")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for model in args.model:
        r = check_model(model, args, out)
        results.append(r)
        pairs = ", ".join(f"{p['sky']}/{p['ground']} {p['dark_skies']}" for p in r["painted"])
        print(f"{model}: dark skies of {len(args.seeds)} seeds: {pairs}", flush=True)
    (out / "check.json").write_text(json.dumps({"seeds": args.seeds, "top_k": args.top_k, "dark": args.dark,
                                                "results": results}, indent=1))
    print(f"sheets and check.json in {out}")


if __name__ == "__main__":
    main()
