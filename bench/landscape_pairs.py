"""The photo/map pairs the bundled `landscapes` transformer is trained and validated on (bench/retrain_bundled.sh).

Training: the S-FLCKR photos whose maps are not held out, and the COCO photos not bundled with the demo, each with
its COCO-Stuff map and also mirrored left-right (a landscape's mirror image is a landscape; the maps flip with
it). COCO's 255 (unlabeled) is filled with the id of the nearest labelled pixel, so that every id stays within the
182 labels of the S-FLCKR maps. Validation: the held-out S-FLCKR maps (bundled with the demo) and their mirrors,
so that the run's validation loss is measured on photos it never saw.

    python bench/landscape_pairs.py DATA_ROOT WORK_DIR

writes WORK_DIR/landscape_pairs/{photos,maps}/NAME.{jpg,png} and WORK_DIR/landscape_pairs_val/..., where
encode --data .../photos --cond-data .../maps pairs them by name. Reads WORK_DIR/lists/held_ids.txt and
held_maps.txt (photo ids and S-FLCKR map ids held out, written by retrain_bundled.sh).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

N_LABELS = 182
UNLABELED = 255


def fill_unlabeled(labels: np.ndarray) -> np.ndarray:
    """``labels`` (H, W) with every UNLABELED pixel given the id of its nearest labelled pixel."""
    missing = labels == UNLABELED
    if not missing.any():
        return labels
    if missing.all():
        raise ValueError("a map without any labelled pixel")
    nearest = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
    return labels[tuple(nearest)]


def write_pair(photo: Path, labels_png: Path, out: Path, name: str) -> None:
    """The photo and its map as NAME.jpg / NAME.png under out/photos, out/maps, and mirrored as NAME_flip."""
    (out / "photos").mkdir(parents=True, exist_ok=True)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    image = Image.open(photo).convert("RGB")
    labels = fill_unlabeled(np.array(Image.open(labels_png)))
    if labels.max() >= N_LABELS:
        raise ValueError(f"{labels_png}: label {labels.max()} is outside the {N_LABELS} COCO-Stuff labels")
    if labels.shape != (image.height, image.width):
        raise ValueError(f"{labels_png}: map {labels.shape} and photo {image.height}x{image.width} differ in size")
    for suffix, im, lab in (("", image, labels), ("_flip", image.transpose(Image.FLIP_LEFT_RIGHT), labels[:, ::-1])):
        im.save(out / "photos" / f"{name}{suffix}.jpg", quality=95)
        Image.fromarray(np.ascontiguousarray(lab).astype(np.uint8), "L").save(out / "maps" / f"{name}{suffix}.png")


def main(data: Path, work: Path) -> None:
    held_ids = set((work / "lists" / "held_ids.txt").read_text().split())
    held_maps = set((work / "lists" / "held_maps.txt").read_text().split())
    train, val = work / "landscape_pairs", work / "landscape_pairs_val"
    n = {"sflckr": 0, "coco": 0, "held-out": 0}
    for mp in sorted((data / "sflckr_segmentations").glob("*/*.png")):
        photo = data / "sflckr_images" / mp.parent.name / f"{mp.stem}.jpg"
        held = mp.stem in held_maps
        write_pair(photo, mp, val if held else train, f"sflckr_{mp.stem}")
        n["held-out" if held else "sflckr"] += 1
    for mp in sorted((data / "coco_segmentations").glob("*.png")):
        if mp.stem in held_ids:
            continue
        write_pair(data / "coco_images" / f"{mp.stem}.jpg", mp, train, f"coco_{mp.stem}")
        n["coco"] += 1
    print(f"landscape pairs: {n['sflckr']} S-FLCKR + {n['coco']} COCO for training, {n['held-out']} S-FLCKR held "
          f"out; each also mirrored")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
