"""`vqforge sample`: draw images from a transformer model, at its trained size or larger (sliding window)."""

from __future__ import annotations

import argparse

from .options import (add_device, add_max_memory, add_out, add_quiet, add_seed, add_trust_option, budget_from_args,
                      notice, size_multiple)


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """Options shared by `sample` and `complete`."""
    p.add_argument("--model", required=True, help="transformer model directory, run directory, checkpoint (.pt), bundled name, "
                   "taming/NAME (the original's released models: vqforge models --available) or hf://ORG/NAME[@REV]")
    add_out(p, "output folder (PNGs, grid.png, settings.json)")
    p.add_argument("--class", dest="classes", nargs="+", default=None, metavar="C",
                   help="class label(s) for class-conditional models, as ids or names; samples cycle through them "
                        "(default: cycle through all classes)")
    p.add_argument("--cond", default=None, metavar="MAP_OR_DIR",
                   help="condition file or folder for spatial models (segmentation: label-id PNG; depth: float32 "
                        "RGBA PNG, .npy or grayscale PNG; edges: a photo, its edges are detected; lowres: the "
                        "low-resolution image); samples cycle through the files")
    p.add_argument("--size", default=None, metavar="HxW",
                   help="output size in pixels, a multiple of the downsampling factor, or Nx for N times the trained "
                        "size (default: the trained size; condition files are resized to it); larger than trained "
                        "uses the sliding window")
    p.add_argument("--window", default=None, metavar="HxW",
                   help="sliding window in tokens (default: the trained grid, trained size / downsampling factor)")
    p.add_argument("--cond-encoding", choices=("window", "whole"), default="window",
                   help="how a spatial condition is encoded under a sliding window: window (default) = each "
                        "window's own crop, as the training crops were; whole = the whole map at once, then cut "
                        "into windows (the original's way)")
    p.add_argument("--top-k", type=int, default=None,
                   help="keep the k most likely tokens (0 = off; default: the model card's, e.g. the bundled "
                        "models' (`vqforge models`), else 100)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (default: the card's, else off)")
    p.add_argument("--temperature", type=float, default=None,
                   help="softmax temperature (default: the card's, else 1.0)")
    p.add_argument("--cfg", type=float, default=None, metavar="S",
                   help="classifier-free guidance scale, for models trained with a null condition (a NULL class, "
                        "or cond.null_condition) (default: the card's, else 0 = off)")
    p.add_argument("--greedy", action="store_true", help="take the most likely token instead of sampling")
    add_seed(p)
    p.add_argument("--batch-size", type=batch_size_arg, default="auto",
                   help="samples per batch, or auto (default): as many as fit half the free memory by a simple "
                        "estimate (vqforge.sampling.pipeline.auto_batch_size), at most 32")
    add_max_memory(p)
    p.add_argument("--precision", choices=("auto", "bf16", "fp32", "int8", "int4"), default="auto",
                   help="arithmetic of the transformer: fp32 = the exact path; bf16 (CUDA; CPUs with AVX512-BF16/AMX: "
                        "prepacked bf16 weights); int8 / int4 = weight-only quantised linear layers (per channel / "
                        "per --int4-group channels; docs/sampling.md has their quality); auto (default) = bf16 on "
                        "CUDA, and on a CPU the fastest of fp32, bf16 and int8, timed on the model once")
    p.add_argument("--int4-group", type=int, default=32, choices=(32, 64, 128, 256),
                   help="input channels sharing an int4 scale and zero point (default 32)")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile the decode step: auto = on CUDA (bf16, CUDA graphs); on = also the fp32 path on "
                        "any device (inductor; slower than eager on a CPU in docs/benchmarks.md); the packed bf16 "
                        "CPU path is never compiled")
    p.add_argument("--no-compile", action="store_true", help=argparse.SUPPRESS)  # old spelling of --precision fp32
    add_device(p)
    add_quiet(p, "no progress bar")
    add_trust_option(p)


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="sample images from a transformer model (any size, sliding window)",
                       description="Sample images with a trained transformer. Writes one PNG per sample, grid.png and "
                                   "settings.json into --out.")
    add_sampling_args(p)
    p.add_argument("--num", type=int, default=None,
                   help="number of samples (default: 8, or one per condition file)")
    p.add_argument("--reject-with", default=None, metavar="CLASSIFIER",
                   help="classifier-based rejection sampling for class-conditional models: draw more candidates and "
                        "keep those the classifier finds most likely to show their class (a classifier .safetensors "
                        "of vqforge.evaluate.classifier, or 'fashion' for the bundled Fashion-MNIST one)")
    p.add_argument("--acceptance", type=float, default=None, metavar="R",
                   help="with --reject-with: the fraction of candidates kept, in (0, 1] (--num / R candidates are "
                        "drawn; default 0.5)")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------------------------- helpers
def parse_hw(text: str | None, what: str, base: tuple[int, int] | None = None):
    """'HxW' or 'S' -> (H, W); with ``base`` (the trained size) also 'Nx', N times it (e.g. '2x'); None stays None."""
    from ..io import VQForgeError

    if text is None:
        return None
    text = text.strip().lower()
    times = size_multiple(text) if base is not None else None
    if times is not None and times > 0:
        return round(base[0] * times), round(base[1] * times)
    parts = text.replace("*", "x").split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        hw = ()
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or min(hw) <= 0:
        relative = ", or Nx for N times the trained size (e.g. 2x)" if base is not None else ""
        raise VQForgeError(f"{what} {text!r}: expected HxW (e.g. 256x512) or one positive number{relative}")
    return hw


def load_transformer(path: str, device, trust: bool = False):
    from ..api import load
    from ..io import VQForgeError
    from ..models.transformer import Net2NetTransformer

    model = load(path, trust=trust)
    if not isinstance(model, Net2NetTransformer):
        raise VQForgeError(f"{path}: sampling needs a transformer model, this is a {type(model).__name__}")
    return model.to(device).eval()


def decode_options_from_args(args):
    """--precision / --compile (and the old --no-compile, with a notice) -> DecodeOptions."""
    from ..io import VQForgeError
    from ..sampling.generate import DecodeOptions

    precision, compile_ = args.precision, {"auto": None, "on": True, "off": False}[args.compile]
    if args.no_compile:
        notice("--no-compile is now --precision fp32 --compile off (the exact path)")
        precision, compile_ = "fp32", False
    try:
        return DecodeOptions(precision, compile_, args.int4_group)
    except ValueError as e:
        raise VQForgeError(f"--precision: {e}") from None


def batch_size_arg(text: str):
    """--batch-size: a positive number or 'auto' (kept as the string)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of samples or auto") from None


def fit_batch(model, args, lay, num: int, n_inputs: int = 1, completing: bool = False):
    """(``lay`` fitted to the budget of ``--max-memory`` for ``num`` samples, the batch size of ``--batch-size``):
    :func:`vqforge.sampling.memory.fit_batches` (settings.json records the batch: with it, a seed gives the same
    samples on any machine)."""
    from ..io import VQForgeError
    from ..sampling.memory import fit_batches

    batch = None if args.batch_size == "auto" else args.batch_size
    if batch is not None and batch < 1:
        raise VQForgeError("--batch-size must be >= 1")
    try:
        return fit_batches(model, lay, budget_from_args(args, model.transformer.pos_emb.device), batch, num,
                           guided=args.cfg > 0, completing=completing, n_inputs=n_inputs)
    except ValueError as e:
        raise VQForgeError(f"{args.model}: {e}") from None


def settings_from_args(args):
    """--top-k / --top-p / --temperature / --cfg / --greedy -> SamplingSettings; an option not given takes the
    model card's suggestion, else :data:`vqforge.api.SAMPLING_DEFAULTS` (:func:`vqforge.api.sampling_defaults`;
    written back to ``args``, so that planning and settings.json see the values used)."""
    from ..api import model_card, sampling_defaults
    from ..io import VQForgeError
    from ..sampling.processors import SamplingSettings

    for key, default in sampling_defaults(model_card(args.model)).items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    try:
        return SamplingSettings(temperature=args.temperature, top_k=int(args.top_k) if args.top_k else None,
                                top_p=args.top_p, cfg_scale=args.cfg, greedy=args.greedy)
    except ValueError as e:
        raise VQForgeError(f"sampling settings: {e}") from None


def plan(model, args, image_hw=None, num: int = 1, completing: bool = False, n_inputs: int = 1):
    """The job's :class:`~vqforge.sampling.pipeline.Layout` (``image_hw``, else ``--size``, else the trained size;
    ``--window``), checked before anything is drawn (guidance included) and fitted to the memory budget
    (``--max-memory``; :func:`fit_batch`: ``num`` images in batches of ``--batch-size``,
    ``n_inputs`` condition files, ``completing``: an input image is encoded): decoded whole or in tiles, or
    refused in one line naming the largest size that fits, before anything of that size is allocated."""
    from ..io import VQForgeError
    from ..sampling.pipeline import layout

    try:
        lay = layout(model, image_hw or parse_hw(args.size, "--size", model.trained_hw),
                     parse_hw(args.window, "--window"), cfg_scale=args.cfg, cond_encoding=args.cond_encoding)
    except ValueError as e:
        raise VQForgeError(f"{args.model}: {e}") from None
    return fit_batch(model, args, lay, num, n_inputs, completing)[0]


def check_trained_size(model, args, lay) -> None:
    """A notice line when the job is larger than the model's card says it was trained for
    (:func:`vqforge.api.card_max_scale`)."""
    from ..api import card_max_scale, model_card

    found = card_max_scale(getattr(model, "card", None) or model_card(args.model))
    if found is None:
        return
    scale, why = found
    (H, W), (th, tw) = lay.image_hw, model.trained_hw
    if H > th * scale or W > tw * scale:
        notice(f"warning: {args.model}: {H}x{W} px is larger than it was trained for (up to {int(th * scale)}x"
               f"{int(tw * scale)} px: {why}); expect artefacts")


def check_label_sets(model, args, inputs, sources) -> None:
    """One notice line per condition map whose label ids do not fit the model's label set
    (:func:`vqforge.labels.label_set_problems`: ids the set never uses, or ids that read as another label set,
    e.g. an ADE20K map given to a COCO-Stuff model), from the names and common labels on the model's card."""
    from ..api import model_card
    from ..labels import label_set_problems

    if not getattr(model.condition, "n_labels", 0) or not any(sources):
        return
    card = getattr(model, "card", None) or model_card(args.model)
    names, common = card.get("label_names") or [], card.get("common_labels") or []
    if not isinstance(names, list) or not isinstance(common, list):
        return
    common = [i for i in common if isinstance(i, int) and not isinstance(i, bool)]
    flagged = []
    for c, source in zip(inputs, sources):
        if source is None or c is None or c.dim() != 4:
            continue
        problems = label_set_problems(c[0].flatten(1).sum(1).cpu().numpy(), names, common)  # pixels per id
        if problems:
            flagged.append(f"{source}: {'; '.join(problems)}")
    for line in flagged[:3]:
        notice(f"warning: {line}")
    if len(flagged) > 3:
        notice(f"warning: {len(flagged) - 3} more condition map(s) with the same kind of problem")


def job_count(args) -> tuple[int, int]:
    """(samples to draw, condition files to read) for ``sample``, known before any file is read: ``--num``, else one
    per ``--cond`` file, else 8."""
    from ..data.conditions import condition_files

    n_files = len(condition_files(args.cond)) if args.cond else 1
    return (args.num or (n_files if args.cond else 8)), n_files


OUTPUT_KIND = "sample folder"


def is_sample_folder(path) -> bool:
    """A folder that `vqforge sample` or `complete` wrote (its settings.json says so): it may be replaced."""
    import json

    try:
        return json.loads((path / "settings.json").read_text()).get("command") in ("sample", "complete")
    except (OSError, ValueError, AttributeError):
        return False


def write_samples(model, batches, out_dir, inputs, sources, source: str):
    """Write each image of a job's batches (:func:`~vqforge.sampling.pipeline.draw_batches`) as ``00000.png``, ...;
    returns (the images, one settings entry per sample). A ValueError from the library becomes one line naming
    ``source``."""
    import torch

    from ..imageio import save_tensor_image
    from ..io import VQForgeError

    images, per_sample = [], []
    try:
        for picks, x in batches:
            for j, img in zip(picks, x):
                name = f"{len(per_sample):05d}.png"
                save_tensor_image(out_dir / name, img)
                per_sample.append(sample_record(model, name, inputs[j], sources[j]))
            images.append(x.cpu())
    except ValueError as e:
        raise VQForgeError(f"{source}: {e}") from None
    return torch.cat(images), per_sample


def sample_record(model, file: str, c, source) -> dict:
    """One sample's entry in settings.json: its file, its condition (e.g. the class) and condition file."""
    entry = {"file": file, **(model.condition.input_record(c) if c is not None else {})}
    if source is not None:
        entry["cond"] = source
    return entry


def classes_used(per_sample: list[dict]) -> list | None:
    """The classes the samples show, in order of first use (names where the model knows them), for settings.json;
    None for models without classes."""
    seen: list = []
    for entry in per_sample:
        c = entry.get("class_name", entry.get("class"))
        if c is not None and c not in seen:
            seen.append(c)
    return seen or None


def rejection(args, inputs: list, n: int):
    """--reject-with / --acceptance -> (RejectionPlan, scorer) or (None, None) without them; one-line errors."""
    from ..evaluate.classifier import DEFAULT_WEIGHTS, class_probability, load_classifier
    from ..io import VQForgeError
    from ..sampling.rejection import plan_rejection

    if args.reject_with is None:
        if args.acceptance is not None:
            raise VQForgeError("--acceptance needs --reject-with CLASSIFIER")
        return None, None
    if any(c is None or c.numel() != 1 or c.is_floating_point() for c in inputs):
        raise VQForgeError(f"{args.model}: --reject-with needs a class-conditional model (its samples are scored by "
                           f"the classifier's probability of their class)")
    try:
        job = plan_rejection(n, len(inputs), 0.5 if args.acceptance is None else args.acceptance)
    except ValueError as e:
        raise VQForgeError(f"--acceptance: {e}") from None
    classifier, _ = load_classifier(DEFAULT_WEIGHTS if args.reject_with == "fashion" else args.reject_with)
    labels = [int(c) for c in inputs]

    def score(images, picks):
        import torch

        return class_probability(classifier, images, torch.tensor([labels[j] for j in picks]))

    return job, score


def run(args: argparse.Namespace) -> int:
    import time

    import torch
    from tqdm import tqdm

    from .. import __version__
    from ..data.conditions import condition_inputs
    from ..devices import resolve_device
    from ..imageio import GRID_NAME, SETTINGS_NAME, save_grid
    from ..io import VQForgeError, atomic_dir, check_output_dir, write_json
    from ..sampling.generate import decode_path
    from ..sampling.pipeline import draw_batches
    from ..sampling.rejection import rejection_batches

    device = resolve_device(args.device)
    settings = settings_from_args(args)
    decoding = decode_options_from_args(args)
    decode_path(device, decoding, measure=False)  # an unsupported --precision fails here, before any work
    if args.num is not None and args.num < 1:
        raise VQForgeError("--num must be >= 1")
    out_dir = check_output_dir(args.out, OUTPUT_KIND, is_sample_folder)
    model = load_transformer(args.model, device, args.trust_checkpoint)
    n, n_files = job_count(args)
    lay = plan(model, args, num=n, n_inputs=n_files)  # sizes and memory checked before anything of that size
    inputs, sources = condition_inputs(model.condition, lay.image_hw, args.classes, args.cond)
    check_label_sets(model, args, inputs, sources)
    check_trained_size(model, args, lay)
    reject, score = rejection(args, inputs, n)
    lay, batch_size = fit_batch(model, args, lay, reject.n_candidates if reject is not None else n, n_files)

    generator = torch.Generator(device=device).manual_seed(args.seed)
    t0 = time.perf_counter()
    n_drawn = reject.n_candidates if reject is not None else n
    bar = tqdm(total=n_drawn * lay.n_tokens, desc="sample", unit="tok", unit_scale=True, disable=args.quiet)
    tick = lambda _done, _total, z: bar.update(z.shape[0])  # noqa: E731
    scores: list[float] = []
    if reject is None:
        batches = draw_batches(model, lay, inputs, n, batch_size, settings, generator, decoding=decoding,
                               callback=tick)
    else:
        batches = rejection_batches(model, lay, inputs, reject, batch_size, settings, score, generator,
                                    decoding=decoding, callback=tick, scores_out=scores)
    with atomic_dir(out_dir, OUTPUT_KIND, is_sample_folder) as tmp:  # complete, or absent if interrupted
        images, per_sample = write_samples(model, batches, tmp, inputs, sources, args.model)
        bar.close()
        seconds = time.perf_counter() - t0
        save_grid(tmp / GRID_NAME, images)
        write_json(tmp / SETTINGS_NAME, {
            "command": "sample", "vqforge_version": __version__, "model": str(args.model), "mode": model.mode,
            "num": n, "batch_size": batch_size, "size": list(lay.image_hw), "token_grid": list(lay.grid_hw),
            "window": list(lay.window_hw), "sliding_window": lay.sliding, "cond": args.cond,
            "decode_tile": list(lay.decode_tile) if lay.decode_tile else None,
            "cond_encoding": lay.cond_encoding,
            "classes": classes_used(per_sample),
            "top_k": settings.top_k, "top_p": settings.top_p, "temperature": settings.temperature,
            "cfg": settings.cfg_scale, "greedy": settings.greedy, "seed": args.seed, "device": str(device),
            "decode_path": decode_path(device, decoding),
            "seconds": round(seconds, 3),
            "tokens_per_second": round(n_drawn * lay.n_tokens / seconds, 1),
            **({"rejection": {"classifier": args.reject_with, "acceptance": reject.acceptance,
                              "candidates": reject.n_candidates, "kept": reject.n_kept,
                              "kept_fraction": reject.realised}}
               if reject is not None else {}),
            "samples": [dict(e, score=round(v, 6)) for e, v in zip(per_sample, scores)] if scores else per_sample,
        })
    kept = f", the best {reject.n_kept} of {reject.n_candidates} candidates" if reject is not None else ""
    print(f"wrote {n} sample(s) of {lay.image_hw[0]}x{lay.image_hw[1]} px to {out_dir}{kept} "
          f"({n_drawn * lay.n_tokens / seconds:.0f} tokens/s)")
    return 0
