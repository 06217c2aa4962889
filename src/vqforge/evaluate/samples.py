"""Sample quality against a reference set: FID, KID and precision / recall on Inception features.

Which files are samples (:func:`sample_files`): those a sampling command wrote (listed in its ``settings.json``),
else the images directly in the folder, so that sub-folders of other jobs (larger samples, completions) and
contact sheets are never counted by accident. Small sets are measured with what makes sense for them
(:func:`size_warnings`); a metric that cannot be computed is skipped with its reason, never a crash after the
images were embedded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import VQForgeError
from .fid import FeatureStats, fid_from_stats, files_features, kid, list_image_files, precision_recall

#: Dimension of the Inception pool features: fewer images than this give a rank-deficient covariance.
FEATURE_DIM = 2048
#: Neighbours of the k-NN balls of precision / recall (Kynkaanniemi et al.).
PR_K = 3
#: below this many images in a set, precision / recall get a warning: each set's manifold (k-NN balls in 2048
#: dimensions) is too coarse for the fractions to mean much (the published protocol uses 50 000 images)
PR_RELIABLE = 1000


def sample_files(root: str | Path, recursive: bool = False, limit: int | None = None) -> tuple[list[Path], str]:
    """The sample images of folder ``root`` (at most ``limit``) and a phrase saying how they were chosen.

    A folder written by ``vqforge sample`` / ``complete``: exactly the files its ``settings.json`` lists under
    ``samples``. Any other folder: the images directly in it. ``recursive``: every image under it (sub-folders
    included; either way, contact sheets ``grid.png`` are left out). VQForgeError when there are none, or a
    listed file is missing.
    """
    from ..imageio import GRID_NAME, IMAGE_SUFFIXES, SETTINGS_NAME
    from ..sampling.record import listed_files

    root = Path(root)
    record = root / SETTINGS_NAME
    if recursive or not root.is_dir():
        paths, how = list_image_files(root), "every image under the folder"
    elif listed_files(root) is not None:
        paths, how = [root / name for name in listed_files(root)], f"the files its {SETTINGS_NAME} lists"
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise VQForgeError(f"{record}: lists {missing[0].name}, which is not in {root} "
                               f"({len(missing)} listed file(s) missing)")
    else:
        paths = sorted(p for p in root.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.name != GRID_NAME)
        how = "the images directly in the folder (--recursive: sub-folders too)"
    if not paths:
        raise VQForgeError(f"{root}: no images found" + ("" if recursive else " (--recursive searches sub-folders)"))
    return (paths[:limit] if limit is not None else paths), how


def reference_stats(model, reference: str | Path, batch_size: int = 50, limit: int | None = None,
                    progress: bool = True) -> FeatureStats:
    """Statistics of a reference: a cached ``.npz`` (see :class:`FeatureStats`) or an image folder to embed."""
    reference = Path(reference)
    if reference.suffix == ".npz":
        return FeatureStats.load(reference)
    paths = list_image_files(reference, limit)
    feats = files_features(model, paths, batch_size, progress, f"inception {reference.name}")
    return FeatureStats.from_features(feats, source=str(reference))


def reference_size(reference: str | Path, limit: int | None = None) -> int:
    """How many images a reference holds (a statistics ``.npz`` or an image folder), without embedding them."""
    reference = Path(reference)
    if reference.suffix == ".npz":
        return FeatureStats.load(reference).n
    return len(list_image_files(reference, limit))


def size_warnings(n_samples: int, n_reference: int) -> list[str]:
    """What the set sizes mean for the metrics (nothing for sets of FEATURE_DIM images or more).

    VQForgeError when a set has fewer than 2 images: no metric exists for it.
    """
    if min(n_samples, n_reference) < 2:
        raise VQForgeError(f"sets of {n_samples} and {n_reference} image(s): FID and KID need at least 2 images in "
                           f"each set")
    if min(n_samples, n_reference) >= FEATURE_DIM:
        return []
    return [f"small sets ({n_samples} and {n_reference} images): FID is biased upwards below "
            f"{FEATURE_DIM} images (published FIDs use 10k-50k), so compare FIDs only at equal set sizes; KID is "
            f"unbiased at any size and is the number to read here"]


def pr_problem(n_samples: int, n_reference: int, k: int = PR_K) -> str | None:
    """Why precision / recall (``k`` neighbours) cannot be computed for these set sizes (None when it can)."""
    if min(n_samples, n_reference) > k:
        return None
    return (f"needs more than {k} images in each set ({n_samples} samples, {n_reference} reference images); "
            f"--no-pr skips it without this note")


def kid_note(kid_mean: float | None, kid_std: float | None) -> str | None:
    """One line explaining a negative KID (None otherwise)."""
    if kid_mean is None or kid_mean >= 0:
        return None
    return (f"KID is negative ({kid_mean:.5f} +- {kid_std:.5f}): its unbiased estimate scatters around 0 when the "
            f"sets are alike or small; read it as 0 within its spread")


def fid_or_fallback(a: FeatureStats, b: FeatureStats, method: str = "sqrtm") -> tuple[float, str]:
    """(FID, the method that computed it): when ``sqrtm`` fails on a near-singular covariance product (typical
    of small sets), the eigendecomposition route computes the same quantity, and the method says so."""
    try:
        return fid_from_stats(a, b, method), method
    except ValueError as e:
        return fid_from_stats(a, b, "eigh"), f"eigh ({method} failed: {e})"


def compare(samples: FeatureStats, reference: FeatureStats, kid_subsets: int = 100, kid_subset_size: int = 1000,
            pr: bool = True, pr_k: int = PR_K, fid_method: str = "sqrtm", seed: int = 0) -> dict:
    """FID (always), KID and precision / recall (when both sides carry raw features) as a JSON-ready dict.

    Metrics that cannot be computed are None, with the reason under ``skipped``; ``warnings`` says what the set
    sizes mean and explains a negative KID.
    """
    if samples.mu.shape != reference.mu.shape:
        raise VQForgeError(f"{reference.source}: feature size {reference.mu.shape[0]} does not match the samples' "
                           f"{samples.mu.shape[0]} (statistics from another network?)")
    res: dict = {"n_samples": samples.n, "n_reference": reference.n, "fid": None, "fid_method": fid_method,
                 "kid_mean": None, "kid_std": None, "kid_subset_size": None, "precision": None, "recall": None,
                 "skipped": {}, "warnings": size_warnings(samples.n, reference.n)}
    res["fid"], res["fid_method"] = fid_or_fallback(samples, reference, fid_method)
    if samples.features is None or reference.features is None:
        why = "the reference statistics file holds no raw features (save it with features)"
        res["skipped"]["kid"] = why
        if pr:
            res["skipped"]["precision_recall"] = why
        return res
    fs, fr = np.asarray(samples.features), np.asarray(reference.features)
    res["kid_mean"], res["kid_std"], res["kid_subset_size"] = kid(fs, fr, kid_subsets, kid_subset_size, seed=seed)
    note = kid_note(res["kid_mean"], res["kid_std"])
    if note:
        res["warnings"].append(note)
    problem = pr_problem(len(fs), len(fr), pr_k) if pr else "disabled (--no-pr)"
    if problem:
        res["skipped"]["precision_recall"] = problem
    else:
        res["precision"], res["recall"] = precision_recall(fr, fs, k=pr_k)
        note = pr_note(len(fs), len(fr))
        if note:
            res["warnings"].append(note)
    return res


def pr_note(n_samples: int, n_reference: int) -> str | None:
    """One line on what precision / recall mean for these set sizes (None from :data:`PR_RELIABLE` images up)."""
    if min(n_samples, n_reference) >= PR_RELIABLE:
        return None
    return (f"precision/recall from {n_samples} and {n_reference} images mean little (even 0 or 1): the k-NN "
            f"estimate of each set's manifold is coarse below {PR_RELIABLE} images per set (the published protocol "
            f"uses 50000); --no-pr skips them")


def evaluate_samples(samples: str | Path, reference: str | Path, *, recursive: bool = False,
                     limit: int | None = None, batch_size: int = 50, device: str = "auto",
                     inception: str | None = None, save_reference_stats: str | Path | None = None,
                     stats_only: bool = False, pr: bool = True, kid_subsets: int = 100, kid_subset_size: int = 1000,
                     fid_method: str = "sqrtm", seed: int = 0, progress: bool = True, say=print) -> dict:
    """``vqforge evaluate samples``: the sample images of folder ``samples`` (:func:`sample_files`) against
    ``reference`` (an image folder or a statistics ``.npz``), measured by :func:`compare`.

    Which files count, and whether the set sizes allow any metric, is settled before any image is embedded.
    ``save_reference_stats``: also write the reference's statistics there (with raw features unless
    ``stats_only``; ``say`` tells where). Returns the JSON record.
    """
    from ..config import notice
    from ..devices import resolve_device
    from ..nn.inception import load_fid_inception

    paths, chosen = sample_files(samples, recursive, limit)
    size_warnings(len(paths), reference_size(reference, limit))
    net = load_fid_inception(inception, device=resolve_device(device))
    ref = reference_stats(net, reference, batch_size=batch_size, limit=limit, progress=progress)
    if save_reference_stats:
        if Path(reference).suffix == ".npz":
            notice(f"--save-reference-stats ignored, the reference already is statistics ({reference})")
        else:
            ref.save(save_reference_stats, with_features=not stats_only)
            say(f"wrote reference statistics {save_reference_stats} ({ref.n} images)")
    feats = files_features(net, paths, batch_size, progress, f"inception {Path(samples).name}")
    res = compare(FeatureStats.from_features(feats, source=str(samples)), ref, kid_subsets, kid_subset_size, pr=pr,
                  fid_method=fid_method, seed=seed)
    return {"command": "evaluate samples", "samples": str(samples), "samples_chosen": chosen,
            "reference": str(reference), "reference_source": ref.source, "inception": net.source, **res}
