"""Sample quality against a reference set: FID, KID and precision / recall on Inception features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import VQForgeError
from .fid import FeatureStats, fid_from_stats, folder_features, kid, precision_recall


def reference_stats(model, reference: str | Path, batch_size: int = 50, limit: int | None = None,
                    progress: bool = True) -> FeatureStats:
    """Statistics of a reference: a cached ``.npz`` (see :class:`FeatureStats`) or an image folder to embed."""
    reference = Path(reference)
    if reference.suffix == ".npz":
        return FeatureStats.load(reference)
    feats = folder_features(model, reference, batch_size=batch_size, limit=limit, progress=progress)
    return FeatureStats.from_features(feats, source=str(reference))


def compare(samples: FeatureStats, reference: FeatureStats, kid_subsets: int = 100, kid_subset_size: int = 1000,
            pr: bool = True, pr_k: int = 3, fid_method: str = "sqrtm") -> dict:
    """FID (always), KID and precision / recall (when both sides carry raw features) as a JSON-ready dict.

    Metrics that cannot be computed are None, with the reason under ``skipped``.
    """
    if samples.mu.shape != reference.mu.shape:
        raise VQForgeError(f"{reference.source}: feature size {reference.mu.shape[0]} does not match the samples' "
                           f"{samples.mu.shape[0]} (statistics from another network?)")
    res: dict = {"n_samples": samples.n, "n_reference": reference.n, "fid": fid_from_stats(samples, reference, fid_method),
                 "kid_mean": None, "kid_std": None, "kid_subset_size": None, "precision": None, "recall": None,
                 "skipped": {}}
    if samples.features is None or reference.features is None:
        why = "the reference statistics file holds no raw features (save it with features)"
        res["skipped"]["kid"] = why
        if pr:
            res["skipped"]["precision_recall"] = why
        return res
    fs, fr = np.asarray(samples.features), np.asarray(reference.features)
    res["kid_mean"], res["kid_std"], res["kid_subset_size"] = kid(fs, fr, kid_subsets, kid_subset_size)
    if pr:
        res["precision"], res["recall"] = precision_recall(fr, fs, k=pr_k)
    else:
        res["skipped"]["precision_recall"] = "disabled"
    return res
