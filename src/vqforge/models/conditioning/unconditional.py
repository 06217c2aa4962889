"""Unconditional models: every sequence starts with one start token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Condition, ConditionConfig


@dataclass(frozen=True)
class UnconditionalConfig(ConditionConfig):
    """No condition; ``sos_token`` is the id of the start token in front of the image tokens."""

    mode: ClassVar[str] = "unconditional"
    sos_token: int = 0


class Unconditional(Condition):
    """Model input: anything with a batch dimension (the images); tokens: ``[[sos_token]] * B``."""

    Config = UnconditionalConfig
    input_hint = "nothing"
    null_key = None

    @property
    def n_ids(self) -> int:
        return self.config.sos_token + 1

    def describe_ids(self) -> str:
        return f"start token {self.config.sos_token}"

    def build_input(self, images=None, raw=None) -> torch.Tensor:
        x = images if images is not None else raw
        if x is None:
            raise ValueError("unconditional: pass the images (their batch size sets the start tokens)")
        return x

    def default_input(self, batch, image_hw, device=None) -> torch.Tensor:
        return torch.zeros(batch, 1, device=device)  # only the batch size matters

    def encode(self, c: torch.Tensor) -> torch.Tensor:
        return torch.full((c.shape[0], 1), self.config.sos_token, dtype=torch.long, device=c.device)

    def batch_tokens(self, batch, device) -> torch.Tensor:
        x = batch["tokens"] if "tokens" in batch else batch["image"]
        return self.encode(x.to(device))
