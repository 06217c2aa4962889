"""The entropy penalty of MaskGIT / LFQ: confident per-latent assignments, a uniformly used codebook."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ConfigError


def _entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-10))).sum(dim)


def entropy_penalty(distances: torch.Tensor, temperature: float = 0.01) -> dict[str, torch.Tensor]:
    """Entropy terms from distances (N, K) between N latents and K codes.

    The soft assignment is ``p = softmax(-distances / temperature)``. Returns ``penalty`` =
    mean per-latent entropy (to make small) minus the entropy of the codebook-average assignment
    (to make large), and both parts, ``sample_entropy`` and ``codebook_entropy``.
    """
    p = torch.softmax(-distances.float() / temperature, dim=1)  # (N, K)
    sample = _entropy(p).mean()
    codebook = _entropy(p.mean(dim=0))
    return {"penalty": sample - codebook, "sample_entropy": sample, "codebook_entropy": codebook}


@dataclass(frozen=True)
class EntropyOptions:
    """The entropy penalty's settings, shared by the kinds that offer it (a mixin of their configs).

    entropy_weight: weight of the penalty (0 = off). entropy_temperature: temperature of the soft
    assignment ``softmax(-distance / T)``.
    """

    entropy_weight: float = 0.0
    entropy_temperature: float = 0.01

    def __post_init__(self) -> None:
        later = getattr(super(), "__post_init__", None)  # the checks of the kind's other bases
        if later is not None:
            later()
        if self.entropy_weight < 0:
            raise ConfigError.at("entropy_weight", f"must be >= 0, got {self.entropy_weight}")
        if self.entropy_weight > 0 and self.entropy_temperature <= 0:
            raise ConfigError.at("entropy_temperature", f"must be > 0, got {self.entropy_temperature}")

    def entropy_options(self) -> dict:
        """Keyword arguments for the quantizer's constructor."""
        return dict(entropy_weight=self.entropy_weight, entropy_temperature=self.entropy_temperature)
