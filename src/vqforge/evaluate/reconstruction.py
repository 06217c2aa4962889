"""First-stage (VQGAN) reconstruction metrics: PSNR, SSIM, LPIPS, reconstruction FID / KID, codebook use."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from ..quantizers import perplexity
from .fid import FeatureStats, kid
from .samples import fid_or_fallback, kid_note, size_warnings
from ..metrics import psnr, ssim


def try_lpips(vgg_path=None, heads_path=None, vgg_option: str = "--lpips-vgg /path/to/vgg16-397923af.pth",
              heads_option: str = "--lpips-heads /path/to/lpips/weights/v0.1/vgg.pth"):
    """``(LPIPS module, None)`` when its weights exist, else ``(None, reason)`` (never raises for missing files);
    the reason says how to give a missing file's path (``vgg_option`` / ``heads_option``: `evaluate recon`'s)."""
    try:
        from ..losses import LPIPS
    except ImportError as e:  # the losses package is not there
        return None, f"vqforge.losses.LPIPS unavailable ({e})"
    from ..io import VQForgeError

    try:
        return LPIPS.from_pretrained(vgg_path, heads_path, "", vgg_option, heads_option), None
    except VQForgeError as e:
        return None, str(e)


@torch.inference_mode()
def evaluate_reconstruction(model: torch.nn.Module, batches: Iterable[torch.Tensor], total: int | None = None,
                            inception: torch.nn.Module | None = None, lpips: torch.nn.Module | None = None,
                            lpips_skipped: str | None = None, kid_subsets: int = 100, kid_subset_size: int = 1000,
                            fid_method: str = "sqrtm", real_features: np.ndarray | None = None,
                            progress: bool = True, seed: int = 0) -> dict:
    """Reconstruct every batch (B, 3, H, W) in [-1, 1] with a VQGAN and measure it.

    Returns a JSON-ready dict: ``n_images``, ``psnr`` and ``ssim`` (means over images), ``lpips`` (mean,
    or None with ``lpips_skipped`` giving the reason), ``rfid`` / ``kid_mean`` / ``kid_std`` between the
    Inception features of inputs and reconstructions (None without ``inception``; ``real_features``, the
    inputs' features in the same order, e.g. from cached reference statistics, saves embedding them
    again; ``seed``: KID's subsets), codebook use: ``codes_used``, ``n_codes``, ``codebook_usage`` (share of
    codes used) and ``perplexity``, and ``warnings`` (what a small set means for rFID; a negative KID).
    """
    from tqdm import tqdm

    device = next(model.parameters()).device
    n_codes = int(model.n_codes)
    counts = torch.zeros(n_codes, dtype=torch.long)
    psnrs, ssims, lps = [], [], []
    f_real, f_rec = [], []
    n = 0
    with tqdm(total=total, desc="reconstruct", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for x in batches:
            x = x.to(device).float()
            out = model(x)
            rec = out.reconstruction.float().clamp(-1, 1)  # (B, C, H, W)
            idx = out.quantizer.indices
            counts += torch.bincount(idx.flatten().cpu(), minlength=n_codes)[:n_codes]
            xc = x.clamp(-1, 1)
            psnrs.append(psnr(rec, xc).cpu())  # (B,), data range 2 on [-1, 1]
            ssims.append(ssim(rec, xc).cpu())
            if lpips is not None:
                gray = x.shape[1] == 1  # LPIPS's VGG takes RGB: gray is shown to it as three equal channels
                lps.append(lpips(rec.expand(-1, 3, -1, -1) if gray else rec, x.expand(-1, 3, -1, -1) if gray else x)
                           .flatten().float().cpu())
            if inception is not None:
                if real_features is None:
                    f_real.append(inception(x).cpu().numpy())
                f_rec.append(inception(rec).cpu().numpy())
            n += x.shape[0]
            bar.update(x.shape[0])
    used = int((counts > 0).sum())
    # perplexity of the pooled code histogram (vqforge.quantizers.perplexity on the counts as indices)
    ppl = float(perplexity(torch.repeat_interleave(torch.arange(n_codes), counts), n_codes)) if counts.sum() else 0.0
    res = {
        "n_images": n,
        "psnr": float(torch.cat(psnrs).mean()),
        "ssim": float(torch.cat(ssims).mean()),
        "lpips": float(torch.cat(lps).mean()) if lps else None,
        "lpips_skipped": None if lps else (lpips_skipped or "no LPIPS network given"),
        "rfid": None, "fid_method": None, "kid_mean": None, "kid_std": None, "kid_subset_size": None,
        "codes_used": used, "n_codes": n_codes, "codebook_usage": used / n_codes, "perplexity": ppl, "warnings": [],
    }
    if inception is not None and n >= 2:
        fr = np.concatenate(f_real) if real_features is None else np.asarray(real_features)
        res.update(_distances(fr, np.concatenate(f_rec), fid_method, kid_subsets, kid_subset_size, seed))
    return res


def _distances(fr: np.ndarray, fc: np.ndarray, fid_method: str, kid_subsets: int, kid_subset_size: int, seed: int
               ) -> dict:
    """rFID and KID between the Inception features of inputs ``fr`` and reconstructions ``fc`` (N, D), with the
    warnings a small set or a negative KID call for."""
    if fr.shape[0] != fc.shape[0]:
        raise ValueError(f"real_features has {fr.shape[0]} rows for {fc.shape[0]} images")
    res = {}
    res["rfid"], res["fid_method"] = fid_or_fallback(FeatureStats.from_features(fr), FeatureStats.from_features(fc),
                                                     fid_method)
    res["kid_mean"], res["kid_std"], res["kid_subset_size"] = kid(fr, fc, kid_subsets, kid_subset_size, seed=seed)
    res["warnings"] = size_warnings(len(fc), len(fc)) + [w for w in [kid_note(res["kid_mean"], res["kid_std"])] if w]
    return res
