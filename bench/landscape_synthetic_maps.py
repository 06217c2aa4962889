"""Synthetic segmentation maps for training the `landscapes` condition stage beyond its few real maps.

The condition stage trained on the 50 real photo maps alone learnt them by heart: it reconstructed its training
maps at 0.90 pixel accuracy and the held-out ones at 0.36-0.39, while keeping the majority label of each 8x8
token patch would keep 0.89 of them (`docs/models.md`, Limits). These maps teach it labels and boundaries
rather than particular maps: each has 2-7 labels drawn from the real maps' label shares (flattened by a square
root, so rarer labels are seen too), laid out by smooth random fields, each pulled towards its label's mean
height in the real maps (sky above, sea and grass below) by a per-map strength, so that some maps are layered
like landscapes and some are blobs.

    PYTHONPATH=src python bench/landscape_synthetic_maps.py --maps runs/landscape_pairs/maps \
        --out runs/landscape_syn_maps --n 1500
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SIZES = ((192, 256), (256, 192), (192, 192), (176, 288), (224, 224))  # (H, W)


def label_stats(maps: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label ids of the real maps, their pixel shares and their mean heights (0 top .. 1 bottom)."""
    share: dict[int, float] = {}
    height: dict[int, float] = {}
    for path in sorted(maps.iterdir()):
        a = np.asarray(Image.open(path))
        ys = np.broadcast_to(np.linspace(0, 1, a.shape[0])[:, None], a.shape)
        for k in np.unique(a):
            where = a == k
            share[int(k)] = share.get(int(k), 0.0) + where.mean()
            height[int(k)] = height.get(int(k), 0.0) + where.mean() * ys[where].mean()
    ids = np.array(sorted(share))
    s = np.array([share[k] for k in ids])
    return ids, s / s.sum(), np.array([height[k] / share[k] for k in ids])


def smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> torch.Tensor:
    """(H, W) smooth random field: a cells x cells normal grid upsampled bicubically."""
    g = torch.from_numpy(rng.standard_normal((1, 1, cells, cells))).float()
    return F.interpolate(g, size=(h, w), mode="bicubic", align_corners=True)[0, 0]


def synthetic_map(rng: np.random.Generator, ids: np.ndarray, p: np.ndarray, mean_y: np.ndarray) -> np.ndarray:
    """One (H, W) uint8 label map."""
    h, w = SIZES[rng.integers(len(SIZES))]
    k = min(int(rng.integers(2, 8)), len(ids))
    pick = rng.choice(len(ids), size=k, replace=False, p=p)
    pull = rng.uniform(0.0, 12.0)  # 0: blobs anywhere; 12: layered by height
    y = torch.linspace(0, 1, h)[:, None].expand(h, w)
    scores = []
    for j in pick:
        field = rng.uniform(0.5, 1.5) * smooth_field(rng, h, w, int(rng.integers(2, 7)))
        field += 0.08 * smooth_field(rng, h, w, 24)  # rough boundaries
        scores.append(field - pull * (y - float(mean_y[j])) ** 2)
    return ids[pick][torch.stack(scores).argmax(0).numpy()].astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", type=Path, required=True, help="real label-id maps (PNG) whose label statistics to use")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ids, share, mean_y = label_stats(args.maps)
    p = np.sqrt(share)
    p /= p.sum()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.n):
        Image.fromarray(synthetic_map(rng, ids, p, mean_y), mode="L").save(args.out / f"syn_{i:05d}.png")
    print(f"{args.n} maps with labels from {len(ids)} of {args.maps} -> {args.out}")


if __name__ == "__main__":
    main()
