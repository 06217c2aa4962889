"""Class-conditional models: one token per image, the class id (plus a NULL class for guidance)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import KEY, Condition, ConditionConfig, DataFacts


@dataclass(frozen=True)
class ClassConfig(ConditionConfig):
    """Conditioning on a class label.

    n_classes: number of classes (0: derived from the training data's labels). null_class: a NULL class with
    id ``n_classes`` exists (classifier-free guidance; the original's class models have none). dropout:
    probability that a training label is replaced by the NULL class. names: the class names, in id order
    (recorded from the training data, so that samples can be asked for by name).
    """

    renamed_keys: ClassVar[dict[str, str | None]] = {"class_dropout": "dropout"}  # old key -> new key

    mode: ClassVar[str] = "class"
    n_classes: int = 0
    null_class: bool = True
    dropout: float = 0.0
    names: tuple[str, ...] = ()


class ClassCondition(Condition):
    """Model input: labels (B,) int64, ``-1`` = the NULL class; tokens: ``[[label]]`` (B, 1)."""

    Config = ClassConfig
    raw_input = "label"
    input_hint = "class labels (--class)"
    null_key = "null_class"

    @property
    def n_ids(self) -> int:
        return self.config.n_classes + (1 if self.config.null_class else 0)

    @property
    def null_id(self) -> int | None:
        return self.config.n_classes if self.config.null_class else None

    def describe_ids(self) -> str:
        return f"{self.config.n_classes} classes" + (" + 1 NULL class" if self.config.null_class else "")

    def class_id(self, label: str) -> int:
        """The id of a class given by id or by name; ValueError naming the known classes otherwise."""
        names = self.config.names
        if label in names:
            return names.index(label)
        try:
            i = int(label)
        except ValueError:
            i = -2
        if not 0 <= i < self.config.n_classes:
            known = f"{', '.join(names)} or " if names else ""
            raise ValueError(f"--class {label}: unknown class {label} (this model has classes {known}"
                             f"0..{self.config.n_classes - 1})")
        return i

    def label_inputs(self, labels: list[str] | None) -> list[torch.Tensor]:
        """One model input per label (ids or names); without labels, every class in turn."""
        ids = [self.class_id(str(x)) for x in labels] if labels else list(range(self.config.n_classes))
        return [torch.tensor([i]) for i in ids]

    def input_record(self, c: torch.Tensor) -> dict:
        i = int(c.view(-1)[0])
        names = self.config.names
        return {"class": i, **({"class_name": names[i]} if 0 <= i < len(names) else {})}

    def build_input(self, images=None, raw=None) -> torch.Tensor:
        if raw is None:
            raise ValueError("class conditioning needs the labels (B,)")
        return raw.long().view(-1)

    def encode(self, c: torch.Tensor) -> torch.Tensor:
        labels = c.long().view(-1, 1)
        n = self.config.n_classes
        if n and ((labels < -1) | (labels >= n)).any():
            raise ValueError(f"class labels must lie in [0, {n}) or be -1 (NULL class)")
        if (labels < 0).any():
            if self.null_id is None:
                raise ValueError("label -1 (NULL class) used, but this model has no NULL class")
            labels = torch.where(labels < 0, torch.full_like(labels, self.null_id), labels)
        return labels  # (B, 1)

    def batch_tokens(self, batch, device) -> torch.Tensor:
        return self.encode(batch["label"].to(device))

    def sample_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """One sample per class, cycling."""
        return self.encode(torch.arange(tokens.shape[0], device=tokens.device) % self.config.n_classes)

    def problems(self) -> list[str]:
        out = super().problems()
        if self.config.n_classes < 1:
            out.append(f"{KEY}.n_classes must be >= 1 for class conditioning (it is derived from the labels of "
                       f"the training data when left at 0)")
        if self.config.names and len(self.config.names) != self.config.n_classes:
            out.append(f"{KEY}.names lists {len(self.config.names)} classes, {KEY}.n_classes is {self.config.n_classes}")
        return out

    def derive(self, facts: DataFacts) -> tuple[ClassConfig, list[str]]:
        cfg, out = super().derive(facts)
        names = facts.label_names
        if names is None:
            return cfg, out + ["class conditioning needs labels (ImageFolder sub-folders, or tokens encoded with "
                               "`vqforge encode --labels`)"]
        if cfg.n_classes == 0:
            cfg = dataclasses.replace(cfg, n_classes=len(names))
        elif len(names) > cfg.n_classes:
            out.append(f"the data has {len(names)} classes, {KEY}.n_classes={cfg.n_classes}: set "
                       f"{KEY}.n_classes={len(names)} or leave it 0 (derived)")
        if not cfg.names and len(names) == cfg.n_classes:
            cfg = dataclasses.replace(cfg, names=tuple(names))
        return cfg, out
