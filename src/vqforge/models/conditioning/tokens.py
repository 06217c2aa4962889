"""Precomputed condition tokens, passed through (the original's dummy condition stage)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import KEY, Condition, ConditionConfig, DataFacts


@dataclass(frozen=True)
class TokensConfig(ConditionConfig):
    """n_codes: ids the condition tokens use (0: not known; derived from pre-encoded data). n_tokens: condition
    tokens per image (0: derived from pre-encoded data; 1 when unknown). null_condition, dropout: a learned null
    condition (id ``n_codes``) for classifier-free guidance, and the training dropout to it."""

    mode: ClassVar[str] = "tokens"
    n_codes: int = 0
    n_tokens: int = 0
    null_condition: bool = False
    dropout: float = 0.0


class Tokens(Condition):
    """Model input and tokens: token ids (B, Tc) int64, used as they are."""

    Config = TokensConfig
    raw_input = "pre_encoded"
    input_hint = "condition token ids"

    @property
    def n_ids(self) -> int:
        return self.config.n_codes + (1 if self.null_id is not None else 0)

    @property
    def null_id(self) -> int | None:
        return self.config.n_codes if self.config.null_condition and self.config.n_codes else None

    def n_tokens(self, image_hw) -> int:
        return self.config.n_tokens or 1

    def build_input(self, images=None, raw=None) -> torch.Tensor:
        if raw is None:
            raise ValueError("token conditioning needs the token ids (B, Tc)")
        return raw.long()

    def encode(self, c: torch.Tensor) -> torch.Tensor:
        return c.long().view(c.shape[0], -1)

    def problems(self) -> list[str]:
        out = super().problems()
        if self.config.null_condition and not self.config.n_codes:
            out.append(f"{KEY}.null_condition=true needs {KEY}.n_codes (the null condition's id is n_codes)")
        return out

    def derive(self, facts: DataFacts) -> tuple[TokensConfig, list[str]]:
        cfg, out = super().derive(facts)
        if not facts.pre_encoded or facts.cond_grid is None:
            return cfg, out + ["token conditioning needs pre-encoded condition tokens (cond_tokens.npy)"]
        n = facts.cond_grid[0] * facts.cond_grid[1]
        if cfg.n_tokens == 0:
            cfg = dataclasses.replace(cfg, n_tokens=n)
        elif cfg.n_tokens != n:
            out.append(f"the tokens hold {n} condition tokens per image, {KEY}.n_tokens={cfg.n_tokens}")
        if cfg.n_codes == 0 and facts.cond_codes:
            cfg = dataclasses.replace(cfg, n_codes=int(facts.cond_codes))
        return cfg, out
