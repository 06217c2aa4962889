"""The data of a transformer run: token datasets from `vqforge encode`, Fashion-MNIST, or images encoded
on the fly (with class labels from sub-folders, coordinate crops of large images), what they tell about the
condition (:class:`~vqforge.models.conditioning.DataFacts`), and how a batch becomes (image tokens, condition
tokens)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data.paired import CoordCrops
from ..data.shards import is_shard_spec
from ..io import VQForgeError
from ..models.transformer import Net2NetTransformer, TransformerConfig
from .transformer_config import TransformerSettings

__all__ = ["TransformerData", "CoordCrops"]


class TransformerData:
    """Train/val datasets, what they tell about the condition (``facts``), and batches as tokens.

    What a mode needs from raw images comes from its :attr:`~vqforge.models.conditioning.Condition.raw_input`;
    whether the data hold what the mode needs is checked by :func:`~vqforge.models.transformer.derive_config`
    with ``facts``.
    """

    def __init__(self, spec: str, cfg: TransformerConfig, tc: TransformerSettings):
        from ..data import tokens as T
        from ..models.conditioning import MODES, DataFacts

        self.spec, self.pre_tokenized = spec, False
        self.label_names: list[str] | None = None
        raw_input = MODES[cfg.cond.mode].raw_input
        in_ch = cfg.first_stage.ddconfig.in_channels
        if is_shard_spec(spec):
            self._shards(spec, cfg, tc, raw_input)
        elif T.is_token_dir(spec):
            ds = T.TokenDataset(spec)
            n_codes = cfg.first_stage.quantizer.n_codes
            if ds.n_codes != n_codes:
                raise VQForgeError(f"{ds.path}: tokens from a codebook of {ds.n_codes} codes, but the first stage "
                                   f"has {n_codes}")
            val_rows = T.held_out_rows(len(ds), tc.val_fraction, tc.seed, ds.sources())
            self.train = T.TokenDataset(spec, np.setdiff1d(np.arange(len(ds)), val_rows))
            self.val = T.TokenDataset(spec, val_rows) if len(val_rows) else None
            self.pre_tokenized = True
            self.grid = ds.grid
            self.image_size = tuple(ds.meta["image_size"])
            self.label_names = ds.label_names
            self.facts = ds.facts()
        elif spec.split(":", 1)[0] == "fashion-mnist":
            from ..data.fashion_mnist import FashionMNIST

            if spec not in ("fashion-mnist", "fashion-mnist:train"):
                raise VQForgeError(f"{spec}: training data is 'fashion-mnist' (its train split; the test split "
                                   f"validates; set VQFORGE_FASHION_MNIST for another folder)")
            self.train = FashionMNIST("train", tc.image_size, in_ch)
            self.val = FashionMNIST("test", tc.image_size, in_ch, limit=2000)
            self.label_names = self.train.label_names
            self.image_size = (tc.image_size, tc.image_size)
        else:
            from ..data.images import ImageDataset, find_images, split_files
            from ..data.paired import LabelledImages, folder_labels

            files = find_images(spec)
            tr, va = split_files(files, tc.val_fraction, seed=tc.seed)
            if raw_input == "coordinates" and tc.coord_full_size > tc.image_size:
                self.train = CoordCrops(tr, tc.coord_full_size, tc.image_size, tc.crop == "random")
                self.val = CoordCrops(va, tc.coord_full_size, tc.image_size, False) if va else None
            else:
                self.train = ImageDataset(tr, tc.image_size, tc.crop, tc.flip, source=spec)
                self.val = ImageDataset(va, tc.image_size, "center", False, source=spec) if va else None
            if raw_input == "label":  # class labels from ImageFolder sub-folders
                _, self.label_names = folder_labels(files, spec)
                self.train = LabelledImages(self.train, self.label_names, spec)
                self.val = LabelledImages(self.val, self.label_names, spec) if self.val is not None else None
            self.image_size = (tc.image_size, tc.image_size)
        if not self.pre_tokenized:
            f = cfg.first_stage.ddconfig.downsample_factor
            self.grid = (self.image_size[0] // f, self.image_size[1] // f)
            names = tuple(self.label_names) if self.label_names is not None else None
            self.facts = DataFacts(image_hw=self.image_size, label_names=names)

    def _shards(self, spec: str, cfg: TransformerConfig, tc: TransformerSettings, raw_input: str) -> None:
        """Tar shards (``vqforge shard``) of a token dataset or of images (with their classes)."""
        from ..data.shards import (TOKEN_SHARDS, DecodeImage, ShardStream, decode_tokens, expand, index_of,
                                   validation_samples)
        from ..data.tokens import meta_facts
        from ..models.conditioning import DataFacts

        shards = expand(spec)
        index = index_of(shards)
        if index.get("kind") == TOKEN_SHARDS:
            meta = index["meta"]
            n_codes = cfg.first_stage.quantizer.n_codes
            if int(meta["n_codes"]) != n_codes:
                raise VQForgeError(f"{spec}: tokens from a codebook of {meta['n_codes']} codes, but the first stage "
                                   f"has {n_codes}")
            decode = decode_tokens
            self.pre_tokenized, self.grid = True, tuple(meta["grid"])
            self.image_size = tuple(meta["image_size"])
            self.label_names = meta.get("label_names")
            self.facts = meta_facts(meta)
        elif index.get("kind") == "images" or not index:
            if raw_input == "coordinates":
                raise VQForgeError(f"{spec}: coordinate crops of large images are cut from an image folder, not shards")
            labels = raw_input == "label"
            self.label_names = index.get("label_names") if labels else None
            if labels and self.label_names is None:
                raise VQForgeError(f"{spec}: class-conditional training needs shards with classes "
                                   f"(vqforge shard --labels folders)")
            decode = DecodeImage(tc.image_size, tc.crop, tc.flip, labels=labels,
                                 channels=cfg.first_stage.ddconfig.in_channels)
            self.image_size = (tc.image_size, tc.image_size)
            f = cfg.first_stage.ddconfig.downsample_factor
            self.grid = (tc.image_size // f, tc.image_size // f)
            names = tuple(self.label_names) if self.label_names is not None else None
            self.facts = DataFacts(image_hw=self.image_size, label_names=names)
        else:
            raise VQForgeError(f"{spec}: shards of an unknown kind {index.get('kind')!r}")
        self.train = ShardStream(shards, decode, seed=tc.seed, buffer=tc.shuffle_buffer, source=spec)
        center = decode if index.get("kind") == TOKEN_SHARDS else DecodeImage(
            tc.image_size, "center", False, labels=self.label_names is not None,
            channels=cfg.first_stage.ddconfig.in_channels)
        self.val = validation_samples(shards, center, 2000)

    def to_tokens(self, model: Net2NetTransformer, batch: dict[str, Any], device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(image tokens (B, N), condition tokens (B, Tc)) of a batch."""
        z = batch["tokens"].to(device) if "tokens" in batch else model.encode_to_z(batch["image"].to(device))
        return z, model.condition.batch_tokens(batch, device)
