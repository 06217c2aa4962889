"""How much of a held-out segmentation map the `landscapes` condition stage keeps: each map of
src/vqforge/demo_assets/segmentations (never seen in training) at a 64 px square and at a 128 px short side,
encoded to condition tokens and decoded again; the share of pixels whose label survives (pixel accuracy), the
labels of the map and the labels the reconstruction puts in their place. The transformer sees only the tokens,
so a map the stage cannot reconstruct is a map the transformer cannot follow (docs/models.md, Limits).

Then, at a 128 px short side (the sliding window's case), how many of the tokens of a window-sized crop encoded
alone (what the transformer was trained on, and what `--cond-encoding window` gives each window) equal the tokens
at the same place in the whole map encoded at once (`--cond-encoding whole`, the original's way).

    PYTHONPATH=src python bench/landscape_condition_check.py [MODEL]      # default: the bundled landscapes
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import vqforge
from vqforge.demo import parts


@torch.inference_mode()
def main(model_name: str = "landscapes") -> None:
    torch.set_num_threads(1)
    model = vqforge.load(model_name).float().eval()
    f = model.cond_stage.downsample_factor
    maps = sorted((Path(parts.__file__).parents[1] / "demo_assets" / "segmentations").iterdir())
    mean: dict[int, list[float]] = {64: [], 128: []}
    for mp in maps:
        for short, square in ((64, True), (128, False)):
            labels, _ = parts._map_crop(mp, short, f, square=square)
            tokens = model.encode_to_c(model.condition.build_input(raw=labels[None]))
            h, w = labels.shape[0] // f, labels.shape[1] // f
            back = model.decode_cond(tokens, (h, w)).argmax(1)[0]  # (H, W) label ids
            acc = (back == labels).float().mean().item()
            kept = torch.unique(labels).tolist()
            got = torch.unique(back).tolist()
            mean[short].append(acc)
            print(f"{mp.stem} {labels.shape[0]}x{labels.shape[1]}: pixel accuracy {acc:.3f}; labels {kept} -> {got}")
    print("mean pixel accuracy: " + ", ".join(f"{sum(v) / len(v):.3f} at {k} px" for k, v in mean.items()))
    wh, ww = model.latent_hw(model.trained_hw)
    for mp in maps:
        labels, _ = parts._map_crop(mp, 128, f)
        x = model.condition.build_input(raw=labels[None])
        whole = model.condition.arrange(model.encode_to_c(x), tuple(labels.shape))[0]  # (ch, cw)
        same = [(model.encode_to_c(x[..., i * f:(i + wh) * f, j * f:(j + ww) * f])[0]
                 == whole[i:i + wh, j:j + ww].flatten()).float().mean().item()
                for i in range(whole.shape[0] - wh + 1) for j in range(whole.shape[1] - ww + 1)]
        print(f"{mp.stem} {labels.shape[0]}x{labels.shape[1]}: {sum(same) / len(same):.0%} of a window's tokens "
              "encoded alone equal the whole map's")


if __name__ == "__main__":
    main(*sys.argv[1:])
