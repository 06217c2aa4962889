"""First-stage (VQGAN) reconstructions: their metrics (PSNR, SSIM, LPIPS, reconstruction FID / KID, codebook use:
:func:`evaluate_reconstruction`; ``vqforge evaluate recon`` is :func:`evaluate_recon`), and ``vqforge reconstruct``
(:func:`reconstruct_files`: the images written back, with their PSNR)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, NamedTuple

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


def evaluate_recon(model: str | Path, data: str | Path, *, size: int | None = None, limit: int | None = None,
                   batch_size: int = 50, device: str = "auto", fid: bool = True, inception: str | None = None,
                   lpips_vgg: str | None = None, lpips_heads: str | None = None, kid_subsets: int = 100,
                   kid_subset_size: int = 1000, fid_method: str = "sqrtm", seed: int = 0, progress: bool = True,
                   trust: bool = False, max_memory: str | None = None) -> dict:
    """``vqforge evaluate recon``: the VQGAN at ``model`` (any name :func:`vqforge.api.load_vqgan` takes)
    reconstructs the images of ``data`` (at most ``limit``), measured by :func:`evaluate_reconstruction`.

    ``size``: the square crop (default: the trained size; 0: each image at its own size). ``fid``: embed inputs
    and reconstructions with the Inception network (``inception``: its weights) for rFID / KID; LPIPS runs when
    its weights exist (``lpips_vgg`` / ``lpips_heads``), else it is reported as skipped. A job over the memory
    budget (``max_memory``, as ``--max-memory``) is refused before any image is read. Returns the JSON record.
    """
    from ..api import load_vqgan
    from ..data.images import image_batches
    from ..devices import resolve_device
    from ..memory import Budget
    from .fid import list_image_files

    dev = resolve_device(device)
    vqgan = load_vqgan(model, "evaluate recon", trust=trust).to(dev).eval()
    paths = list_image_files(data, limit)
    size = vqgan.trained_hw[0] if size is None else size
    check_recon_memory(vqgan, paths, size, batch_size, Budget.from_option(max_memory, dev), data)
    net = None
    if fid:
        from ..nn.inception import load_fid_inception

        net = load_fid_inception(inception, device=dev)
    lpips, why = try_lpips(lpips_vgg, lpips_heads)
    if lpips is not None:
        lpips = lpips.to(dev)
    batches = image_batches(paths, batch_size, size, vqgan.downsample_factor, vqgan.config.ddconfig.in_channels)
    res = evaluate_reconstruction(vqgan, batches, total=len(paths), inception=net, lpips=lpips, lpips_skipped=why,
                                  kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, fid_method=fid_method,
                                  progress=progress, seed=seed)
    if not fid:
        res["fid_skipped"] = "--no-fid"
    return {"command": "evaluate recon", "model": str(model), "data": str(data), "size": size, **res}


def check_recon_memory(model: torch.nn.Module, paths: list[Path], size: int, batch_size: int, budget,
                       data: str | Path) -> None:
    """Refuse in one line (:class:`vqforge.memory.OverBudget`), before any image is read, a reconstruction of
    ``paths`` (from ``data``) whose batch at ``size`` (0: each image's own) would not fit ``budget``: encoder and
    decoder, the LPIPS network's features, the batch."""
    from ..memory import check_images_fit, largest_fitting, refusal
    from ..models.footprint import F32, vqgan_roundtrip_bytes

    b = max(1, min(batch_size, len(paths)))

    def need(hw):  # a square crop of `size`, or each image at its own size (size 0)
        return vqgan_roundtrip_bytes(model.config, hw, b) + 6 * b * hw[0] * hw[1] * 64 * F32

    if not paths:
        return
    if not size:
        check_images_fit(paths, None, model.downsample_factor, need, budget)
        return
    if need((size, size)) > budget.bytes:
        f = model.downsample_factor
        fit = largest_fitting(lambda t: need((t * f, t * f)), budget.bytes, 1, max(1, size // f))
        raise refusal(f"{data}: --size {size} ({b} images a batch)", need((size, size)), budget,
                      None if fit is None else f"--size {fit * f}")


class Reconstructed(NamedTuple):
    """What :func:`reconstruct_files` wrote: PSNR (dB) per input file name, their mean, and the path that ran."""

    psnr: dict[str, float]
    mean: float
    mode: str


def reconstruct_files(model: str | Path, data: str | Path, out: str | Path, *, size: int | None = None,
                      device: str = "auto", precision: str = "auto", compile: bool = False, progress: bool = True,
                      trust: bool = False, max_memory: str | None = None) -> Reconstructed:
    """``vqforge reconstruct``: encode and decode every image of ``data`` (a file or a folder) with the VQGAN at
    ``model`` and write each as ``out/NAME.png``, with ``psnr.json`` (per image and the mean).

    ``size``: resize the shorter side first (default: each image's own size, cropped to a multiple of the
    downsampling factor). ``precision`` / ``compile``: :class:`vqforge.models.inference.VQGANRunner`'s levers.
    Every input is read before anything is written, and ``out`` appears complete or not at all; a job over the
    memory budget (``max_memory``, as ``--max-memory``) is refused before any image is read. ``progress``: a
    progress bar and a line per image.
    """
    from tqdm import tqdm

    from ..api import load_vqgan
    from ..data.images import load_image_tensor
    from ..devices import resolve_device, resolve_precision
    from ..imageio import list_images, save_tensor_image
    from ..io import VQForgeError, atomic_dir, check_output_dir, write_json
    from ..memory import Budget, check_images_fit
    from ..models.footprint import F32, vqgan_roundtrip_bytes
    from ..models.inference import VQGANRunner

    dev = resolve_device(device)
    resolve_precision(precision, dev)  # a clear error before any work
    out_dir = check_output_dir(out, "reconstruct output folder", _is_reconstruct_output)
    vqgan = load_vqgan(model, "reconstruct", trust=trust)
    runner = VQGANRunner(vqgan.to(dev), precision=precision, compile=compile)
    files = list_images(data)
    if not files:
        raise VQForgeError(f"{data}: no images found")
    cfg, f = vqgan.config, vqgan.downsample_factor
    held = len(files) * cfg.ddconfig.in_channels * F32  # every input is read first (bounded by the largest's size)
    check_images_fit(files, size, f, lambda hw: held * hw[0] * hw[1] + vqgan_roundtrip_bytes(cfg, hw),
                     Budget.from_option(max_memory, dev))  # before any image is read at its size
    # Read every input before writing anything: a bad file fails the run with no partial output.
    channels = cfg.ddconfig.in_channels  # read as the model was trained (1: gray, 3: RGB)
    inputs = [load_image_tensor(p, size=size, multiple_of=f, channels=channels) for p in files]
    results = {}
    # the folder appears complete or not at all (an interrupted run leaves nothing)
    with atomic_dir(out_dir, "reconstruct output folder", _is_reconstruct_output) as tmp:
        for path, x in tqdm(list(zip(files, inputs)), desc="reconstruct", unit="img",
                            disable=not progress or len(files) < 2):
            x = x.unsqueeze(0).to(dev)
            rec = runner(x).reconstruction.clamp(-1, 1)
            value = float(psnr(rec, x).item())
            results[path.name] = value
            save_tensor_image(tmp / (path.stem + ".png"), rec[0])
            if progress:
                tqdm.write(f"{path.name}: PSNR {value:.2f} dB")
        mean = sum(results.values()) / len(results)
        write_json(tmp / "psnr.json", {"per_image": results, "mean": mean})
    return Reconstructed(results, mean, runner.mode)


def _is_reconstruct_output(path: Path) -> bool:
    """A folder :func:`reconstruct_files` wrote before (it holds ``psnr.json``): it may be replaced."""
    return (path / "psnr.json").is_file()
