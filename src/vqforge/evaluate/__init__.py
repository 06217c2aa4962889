"""Measuring models with the field's standard numbers.

* :mod:`.fid`: Inception features, cached statistics (``.npz``), FID, KID, precision / recall.
* :mod:`.reconstruction`: a VQGAN's PSNR / SSIM / LPIPS, reconstruction FID / KID, codebook usage.
* :mod:`.samples`: a sample set against reference statistics.
* :mod:`.nll`: bits per dim of held-out tokens under a transformer.

The Inception network itself is :func:`vqforge.nn.inception.load_fid_inception`; ``vqforge evaluate
recon|samples|nll`` is one call each: :func:`.reconstruction.evaluate_recon`, :func:`.samples.evaluate_samples`,
:func:`.nll.evaluate_nll` (and ``vqforge reconstruct`` is :func:`.reconstruction.reconstruct_files`).
"""

from .fid import FeatureStats, extract_features, fid_from_features, fid_from_stats, frechet_distance, kid, precision_recall

__all__ = ["FeatureStats", "extract_features", "fid_from_features", "fid_from_stats", "frechet_distance", "kid",
           "precision_recall"]
