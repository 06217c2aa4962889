"""Edge maps: Canny edges of photos, computed on the fly with the edge conditioning's own detector (one
channel in {-1, 1}), binary cross-entropy on the decoder's logits, edge F1, black-on-white previews."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...data.images import ImageDataset
from ...models.conditioning import EdgesConfig, make_condition
from .base import MapKind, register


@register
class Edges(MapKind):
    name = "edges"
    logits_output = True

    def channels(self, n_labels: int) -> int:
        return 1

    def dataset(self, files, settings, train: bool, n_labels: int):
        return ImageDataset(files, settings.image_size, "random" if train else "center", settings.flip and train,
                            source=settings.data, resize=settings.resize,
                            resize_max=settings.resize_max if train else 0)

    def condition(self, batch, device, n_labels: int) -> torch.Tensor:
        return make_condition(EdgesConfig()).build_input(images=batch["image"].to(device))  # (B, 1, H, W) in {-1, 1}

    def loss(self, rec, x):
        return F.binary_cross_entropy_with_logits(rec, (x > 0).float())

    def metrics(self, rec, x):
        pred, true = rec > 0, x > 0
        tp = (pred & true).sum().item()
        precision, recall = tp / max(pred.sum().item(), 1), tp / max(true.sum().item(), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        return {"val/edge_f1": f1, "val/edge_fraction": true.float().mean().item()}

    def to_rgb(self, maps, n_labels: int):
        return torch.where(maps > 0, -1.0, 1.0).expand(-1, 3, -1, -1)  # edges black on white
