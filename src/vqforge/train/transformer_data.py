"""The data of a transformer run: token datasets from `vqforge encode`, Fashion-MNIST, or images encoded
on the fly (with class labels from sub-folders, coordinate crops of large images), and how a batch becomes
(image tokens, condition tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..io import VQForgeError
from ..models.transformer import Net2NetTransformer

if TYPE_CHECKING:
    from .transformer import TransformerTrainConfig


class TransformerData:
    """Train/val datasets and how a batch becomes (image tokens, condition tokens)."""

    def __init__(self, spec: str, model: Net2NetTransformer, tc: TransformerTrainConfig):
        from ..data import tokens as T

        self.spec, self.pre_tokenized = spec, False
        self.label_names: list[str] | None = None
        mode = model.config.cond.mode
        in_ch = model.first_stage.config.ddconfig.in_channels
        if T.is_token_dir(spec):
            ds = T.TokenDataset(spec)
            self._check_tokens(ds, model)
            n = len(ds)
            order = np.random.default_rng(tc.seed).permutation(n)
            n_val = max(1, int(round(n * tc.val_fraction))) if n > 1 else 0
            self.train = T.TokenDataset(spec, np.sort(order[n_val:]))
            self.val = T.TokenDataset(spec, np.sort(order[:n_val])) if n_val else None
            self.pre_tokenized = True
            self.grid = ds.grid
            self.image_size = tuple(ds.meta["image_size"])
            self.label_names = ds.label_names
        elif spec.split(":", 1)[0] == "fashion-mnist":
            from ..data.fashion_mnist import FashionMNIST

            if spec not in ("fashion-mnist", "fashion-mnist:train"):
                raise VQForgeError(f"{spec}: training data is 'fashion-mnist' (its train split; the test split "
                                   f"validates; set VQFORGE_FASHION_MNIST for another folder)")
            self.train = FashionMNIST("train", tc.image_size, in_ch)
            self.val = FashionMNIST("test", tc.image_size, in_ch, limit=2000)
            self.label_names = self.train.label_names
            self.image_size = (tc.image_size, tc.image_size)
            self.grid = model.latent_hw(self.image_size)
        else:
            from ..data.images import ImageDataset, find_images, split_files

            if mode not in ("unconditional", "class", "edges", "lowres", "coord"):
                raise VQForgeError(f"{spec}: {mode} conditioning needs paired maps; pre-tokenize them with "
                                   f"`vqforge encode` and train on the token dataset")
            files = find_images(spec)
            tr, va = split_files(files, tc.val_fraction, seed=tc.seed)
            if mode == "coord" and tc.coord_full_size > tc.image_size:
                self.train = CoordCrops(tr, tc.coord_full_size, tc.image_size, tc.crop == "random")
                self.val = CoordCrops(va, tc.coord_full_size, tc.image_size, False) if va else None
            else:
                self.train = ImageDataset(tr, tc.image_size, tc.crop, tc.flip, source=spec)
                self.val = ImageDataset(va, tc.image_size, "center", False, source=spec) if va else None
            if mode == "class":
                root = Path(spec)
                names = sorted({f.parent.relative_to(root).as_posix() for f in files})
                self.label_names = names
                self.train = _Labelled(self.train, names, root)
                self.val = _Labelled(self.val, names, root) if self.val is not None else None
            self.image_size = (tc.image_size, tc.image_size)
            self.grid = model.latent_hw(self.image_size)
        if mode == "class" and self.label_names is not None and len(self.label_names) > model.config.cond.n_classes:
            raise VQForgeError(f"{spec}: {len(self.label_names)} classes, but model.cond.n_classes="
                               f"{model.config.cond.n_classes}")
        if mode == "class" and self.label_names is None:
            raise VQForgeError(f"{spec}: class conditioning needs labels (ImageFolder sub-folders or a token "
                               f"dataset with labels)")
        n_img = self.grid[0] * self.grid[1]
        n_cond = model.n_cond_tokens(self.image_size)
        if n_cond + n_img - 1 > model.config.gpt.block_size:
            raise VQForgeError(f"{spec}: {n_cond} condition + {n_img} image tokens ({self.image_size[0]}x"
                               f"{self.image_size[1]} px) need model.gpt.block_size >= {n_cond + n_img - 1}, "
                               f"the config has {model.config.gpt.block_size}")

    @staticmethod
    def _check_tokens(ds, model: Net2NetTransformer) -> None:
        if ds.n_codes != model.n_image_codes:
            raise VQForgeError(f"{ds.path}: tokens from a codebook of {ds.n_codes} codes, but the first stage "
                               f"has {model.n_image_codes}")
        mode = model.config.cond.mode
        if mode not in ("unconditional", "class") and ds.cond is None:
            raise VQForgeError(f"{ds.path}: no condition tokens for {mode} conditioning (encode with --cond-stage)")

    def to_tokens(self, model: Net2NetTransformer, batch: dict[str, Any], device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(image tokens (B, N), condition tokens (B, Tc)) of a batch."""
        mode = model.config.cond.mode
        if "tokens" in batch:
            z = batch["tokens"].to(device)
            if "cond" in batch and mode not in ("unconditional", "class"):
                c = batch["cond"].to(device)
            elif mode == "class":
                c = model.encode_to_c(batch["label"].to(device))
            else:
                c = model.encode_to_c(z)
            return z, c
        x = batch["image"].to(device)
        raw = batch.get("label", batch.get("coord"))
        raw = raw.to(device) if raw is not None else None
        return model.encode_to_z(x), model.encode_to_c(model.build_condition(x, raw))


class CoordCrops(torch.utils.data.Dataset):
    """Crops of large images with their coordinates: ``{"image": (3, crop, crop), "coord": (1, crop, crop)}``.

    Each image is resized (smallest side) to ``full_size``; the coordinate map of the whole resized image
    (raster position / (H*W), as the original FacesHQ data) is cropped together with the image, so the
    condition tells the transformer where the crop lies.
    """

    def __init__(self, files: list[Path], full_size: int, crop: int, random_crop: bool = True):
        if not files:
            raise VQForgeError("no images for coordinate crops")
        self.files, self.full_size, self.crop, self.random_crop = list(files), full_size, crop, random_crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key) -> dict[str, Any]:
        import random

        from PIL import Image

        from ..data.images import load_rgb, to_tensor

        i, seed = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (int(key), 0)
        img = load_rgb(self.files[i])
        w, h = img.size
        s = self.full_size / min(w, h)
        img = img.resize((max(self.full_size, round(w * s)), max(self.full_size, round(h * s))), Image.BICUBIC)
        W, H = img.size
        rng = random.Random(seed)
        left, top = ((rng.randint(0, W - self.crop), rng.randint(0, H - self.crop)) if self.random_crop
                     else ((W - self.crop) // 2, (H - self.crop) // 2))
        coord = torch.arange(H * W, dtype=torch.float32).view(1, H, W) / (H * W)
        return {"image": to_tensor(img.crop((left, top, left + self.crop, top + self.crop))),
                "coord": coord[:, top:top + self.crop, left:left + self.crop].contiguous(), "bad": -1}


class _Labelled(torch.utils.data.Dataset):
    """Adds ``label`` (index of the file's folder in ``names``) to an ImageDataset's items."""

    def __init__(self, ds, names: list[str], root: Path):
        self.ds, self.index = ds, {n: i for i, n in enumerate(names)}
        self.labels = [self.index[f.parent.relative_to(root).as_posix()] for f in ds.files]

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        item = self.ds[key]
        i = int(key[0]) if isinstance(key, (tuple, list)) else int(key)
        item["label"] = torch.tensor(self.labels[i])
        return item
