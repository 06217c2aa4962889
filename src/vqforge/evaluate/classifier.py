"""A small CNN classifier for 28 x 28 grayscale images, to measure whether class-conditional samples show the
class that was asked for (the "class-match rate").

The bundled weights (``vqforge/demo_assets/fashion_classifier.safetensors``) were trained on the Fashion-MNIST
train split by ``bench/train_fashion_classifier.py``; its test-split accuracy is stored beside the weights
(``fashion_classifier.json``), the ceiling a perfect generator would reach under this judge.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..io import VQForgeError, load_safetensors, load_state_dict_strict

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "demo_assets" / "fashion_classifier.safetensors"


class SmallClassifier(nn.Module):
    """Three 3x3 conv layers (32, 64, 128 channels; ReLU; 2x2 max-pools after the first two), global average
    pooling and a linear layer: (B, 1, 28, 28) in [-1, 1] -> logits (B, n_classes)."""

    def __init__(self, n_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.fc = nn.Linear(128, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 32, 14, 14)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # (B, 64, 7, 7)
        h = F.relu(self.conv3(h)).mean(dim=(2, 3))  # (B, 128)
        return self.fc(h)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Predicted class ids (B,) of images (B, 1, 28, 28) in [-1, 1]."""
        self.eval()
        return torch.cat([self(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def load_classifier(path: str | Path = DEFAULT_WEIGHTS) -> tuple[SmallClassifier, dict]:
    """The classifier and its card (``{"test_accuracy": ..., "trained_on": ...}``) from ``path``."""
    path = Path(path)
    if not path.is_file():
        raise VQForgeError(f"{path}: classifier weights not found (make them with bench/train_fashion_classifier.py)")
    model = SmallClassifier()
    load_state_dict_strict(model, load_safetensors(path), path)
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return model.eval(), card


def as_classifier_input(images: torch.Tensor, size: int = 28) -> torch.Tensor:
    """Images (B, C, H, W) in [-1, 1] as the classifier reads them: (B, 1, size, size) (the channel mean; an area
    resize when the size differs)."""
    x = images.float().mean(dim=1, keepdim=True) if images.shape[1] != 1 else images.float()  # (B, 1, H, W)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="area" if x.shape[-1] > size else "bilinear",
                          align_corners=None if x.shape[-1] > size else False)
    return x


@torch.no_grad()
def class_probability(classifier: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The classifier's probability (B,) that each of ``images`` (B, C, H, W) in [-1, 1] shows its requested class
    ``classes`` (B,): the score of rejection sampling (``vqforge sample --reject-with``)."""
    classifier.eval()
    x = as_classifier_input(images).to(next(classifier.parameters()).device)
    probs = classifier(x).float().softmax(dim=1)  # (B, n_classes)
    return probs.gather(1, classes.to(probs.device).long()[:, None])[:, 0].cpu()


def class_match_rate(classifier: SmallClassifier, images: torch.Tensor, classes: torch.Tensor) -> float:
    """Fraction of ``images`` (B, 1, 28, 28) in [-1, 1] that ``classifier`` assigns to the requested ``classes``."""
    return (classifier.predict(images).cpu() == classes.cpu()).float().mean().item()
