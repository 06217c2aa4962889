"""Sizes have a ceiling: every command estimates the peak memory of the work asked for and refuses, in one line,
what exceeds its budget (issue 23, point 1), and decodes in tiles where only the whole decode does not fit.

Every command runs in a child process under an address-space limit (``RLIMIT_AS``, :data:`LIMIT`): a regression
that allocates at the size asked for fails there (an allocation error or a timeout) instead of taking the machine
down. On main before the budget these commands ran for hours (``sample``), tracebacked or were killed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
#: the children's address-space limit: torch and both bundled models take about 0.7 GiB of it
LIMIT = 3 * 2**30
SEG = ROOT / "src/vqforge/demo_assets/segmentations/sflckr_39933489595_f0e5d85b6d_b.png"

CHILD = textwrap.dedent(r"""
    import contextlib, io, json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
    from vqforge.cli import main
    results = []
    for argv in json.loads(sys.argv[2]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = main(argv)
            except BaseException as e:  # a traceback here is a failure the test reports
                rc, _ = -1, err.write(f"{type(e).__name__}: {e}")
        results.append({"rc": rc, "stderr": err.getvalue()})
    print(json.dumps(results))
""")


def run_limited(commands: list[list[str]], timeout: float = 240) -> list[dict]:
    """Run vqforge command lines in one child under :data:`LIMIT`; each one's exit status and stderr."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(LIMIT), json.dumps(commands)], capture_output=True,
                         text=True, timeout=timeout, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                                         "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d / "x.png")
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 255
    Image.fromarray(mask).save(d / "m.png")
    (d / "imgs").mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d / "imgs" / "a.png")
    return d


ABSURD = {  # the command lines (sizes with no ceiling), each refused by its budget
    "sample": ["sample", "--model", "fashion", "--class", "sneaker", "--size", "100000x100000"],
    "sample_1e6": ["sample", "--model", "fashion", "--size", "1000000x1000000"],
    "sample_landscapes": ["sample", "--model", "landscapes", "--cond", str(SEG), "--size", "100000x100000"],
    "complete": ["complete", "--model", "fashion", "--class", "sneaker", "--data", "{d}/x.png", "--mask",
                 "{d}/m.png", "--size", "100000x100000"],
    "encode": ["encode", "--model", "fashion", "--data", "{d}/imgs", "--size", "100000"],
    "reconstruct": ["reconstruct", "--model", "landscapes", "--data", "{d}/imgs", "--size", "100000"],
    "evaluate_recon": ["evaluate", "recon", "--model", "landscapes", "--data", "{d}/imgs", "--size", "100000",
                       "--no-fid"],
    "train_vqgan": ["train", "vqgan", "--config", "vqgan_tiny", "--data", "{d}/imgs", "train.image_size=100000"],
}


@pytest.fixture(scope="module")
def absurd(files):
    """Every command of :data:`ABSURD` in one limited child (``--out`` where the command writes)."""
    writes = {"sample", "sample_1e6", "sample_landscapes", "complete", "encode", "reconstruct", "train_vqgan"}
    commands = [[a.format(d=files) for a in argv] + (["--out", str(files / f"out-{name}")] if name in writes else [])
                for name, argv in ABSURD.items()]
    return dict(zip(ABSURD, run_limited(commands))), files


@pytest.mark.parametrize("name", list(ABSURD))
def test_an_absurd_size_is_refused_in_one_line_naming_size_estimate_and_largest_fit(absurd, name):
    """The size asked for, the estimate, the budget and the largest size that fits, in one line; exit 2; no
    output folder."""
    results, d = absurd
    r = results[name]
    assert r["rc"] == 2, r
    lines = r["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vqforge: error: "), r["stderr"]
    line = lines[0]
    assert "100000" in line and "needs about" in line and "budget" in line, line
    assert "the largest that fits is" in line, line
    assert not (d / f"out-{name}").exists()


def test_sample_refusal_names_a_size_that_then_runs(files):
    """The largest size the refusal names is planned without refusal (the same job, the same budget)."""
    first, = run_limited([["sample", "--model", "fashion", "--class", "sneaker", "--num", "1", "--size", "100000",
                           "--max-memory", "64MiB", "--out", str(files / "s-big")]])
    size = first["stderr"].split("the largest that fits is ")[1].split()[0]
    from vqforge.api import load
    from vqforge.memory import Budget, parse_bytes
    from vqforge.sampling import fit_budget, layout

    model = load("fashion")
    hw = tuple(int(v) for v in size.split("x"))
    fit_budget(model, layout(model, hw), Budget(parse_bytes("64MiB"), "test"), batch=4, num=1, guided=True)


def test_large_fashion_sample_decodes_in_tiles_when_only_the_whole_decode_does_not_fit(files):
    """fashion at 112 px under a 12 MiB budget: the whole decode (its attention over 28x28 positions, three
    blocks) needs more, a tiled decode fits: the command samples instead of refusing and records the tiles in
    settings.json."""
    from vqforge.api import load
    from vqforge.memory import Budget, parse_bytes
    from vqforge.sampling import fit_budget, layout
    from vqforge.sampling.memory import decoder_bytes

    model = load("fashion")
    budget = Budget(parse_bytes("12MiB"), "test")
    assert decoder_bytes(model, (28, 28), None, 1) > budget.bytes  # the whole decode alone does not fit
    lay = fit_budget(model, layout(model, (112, 112)), budget, batch=1, num=1, guided=True)
    assert lay.decode_tile is not None and lay.decode_tile[0] < 28
    r, = run_limited([["sample", "--model", "fashion", "--class", "sneaker", "--num", "1", "--size", "112",
                       "--max-memory", "12MiB", "--greedy", "--quiet", "--out", str(files / "tiled")]], timeout=300)
    assert r["rc"] == 0, r
    settings = json.loads((files / "tiled" / "settings.json").read_text())
    assert settings["decode_tile"] == list(lay.decode_tile) and settings["size"] == [112, 112]


def test_tiled_decode_equals_the_whole_decode_where_one_tile_covers_and_blends_without_seams():
    """A tile covering the grid is the whole decode exactly; with several tiles every pixel is a convex blend of
    the tiles covering it (weights sum to one), so values stay in the decoder's range and a pixel covered by one
    tile is that tile's."""
    import torch

    from vqforge.api import load
    from vqforge.sampling.tiles import decode_tiled, tile_starts

    vq = load("fashion").first_stage.eval()
    z = torch.randint(0, vq.n_codes, (1, 12, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = vq.decode_indices(z)
        assert torch.equal(decode_tiled(vq, z, (12, 12), 3), whole)
        tiled = decode_tiled(vq, z, (7, 7), 2)
        first = vq.decode_indices(z[:, :7, :7])
    assert tile_starts(12, 7, 2) == [0, 5]
    f = vq.downsample_factor
    assert torch.allclose(tiled[..., :5 * f - 2 * f, :5 * f - 2 * f], first[..., :3 * f, :3 * f], atol=1e-6)
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()
    assert (tiled - whole).abs().mean() < 0.5  # the same picture, not another one


def test_decoder_estimate_bounds_the_measured_peak():
    """The estimate (models/footprint.py) is above the peak resident memory measured around a decode, in a fresh
    process: fashion's decoder at a 48x48 grid (attention-bound) and landscapes' at 32x32 (convolution-bound)."""
    child = textwrap.dedent(r"""
        import json, resource, sys, torch
        torch.set_num_threads(1)
        from vqforge.api import load
        from vqforge.models.footprint import vqgan_decode_bytes
        out = []
        for name, side in (("fashion", 48), ("landscapes", 32)):
            fs = load(name).eval().first_stage
            rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            with torch.inference_mode():
                fs.decode_indices(torch.zeros(1, 2, 2, dtype=torch.long))
                z = torch.zeros(1, side, side, dtype=torch.long)
                base = rss()
                fs.decode_indices(z)
                out.append((rss() - base, vqgan_decode_bytes(fs.config, (side, side)).peak))
        print(json.dumps(out))
    """)
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300,
                       env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 0, r.stderr[-2000:]
    for measured, estimate in json.loads(r.stdout.strip().splitlines()[-1]):
        assert measured <= estimate, (measured, estimate)


def test_max_memory_is_parsed_and_a_bad_value_is_one_line():
    from vqforge.io import VQForgeError
    from vqforge.memory import Budget, parse_bytes

    assert parse_bytes("4GiB") == 4 * 2**30 and parse_bytes("512MB") == 512 * 10**6 and parse_bytes("1.5k") == 1500
    with pytest.raises(VQForgeError, match="--max-memory '4x': expected an amount"):
        Budget.from_option("4x")
    assert Budget.default().bytes > 0


def test_the_app_offers_only_sizes_that_fit():
    """The web app listed sides up to 1008 for fashion and then failed the job (its decoder's attention at 252x252
    positions wants over 100 GB): each offered side now fits a one-image job in the budget (a smaller budget
    offers fewer), none passes the model's own limit (its card's, else 16 trained sides), and a job over the budget
    (more images) is one BadInput line naming the largest size that fits."""
    import torch

    pytest.importorskip("fastapi", reason="the web app's dependencies (pip install -e '.[serve]')")
    from vqforge.api import load
    from vqforge.memory import Budget, parse_bytes
    from vqforge.sampling import fit_budget, layout
    from vqforge.serve.engine import MAX_SIDE_TIMES, Engine, offered_sides
    from vqforge.serve.forms import BadInput, JobSettings

    engine = Engine("landscapes", load("landscapes"), torch.device("cpu"))
    engine.budget = Budget(parse_bytes("1GiB"), "test")
    sides = engine.sides(1024)
    for h in sides["height"]:
        fit_budget(engine.net, layout(engine.net, (h, 64)), engine.budget)  # raises when it does not fit
    engine.budget = Budget(parse_bytes("64MiB"), "test")
    small = engine.sides(1024)
    assert 64 in small["height"] and max(small["height"]) < max(sides["height"])
    with pytest.raises(BadInput, match=r"needs about .* the largest that fits is \d+x\d+") as e:
        engine.check("synthesize", JobSettings(model="landscapes", height=128, width=128, count=8), (128, 128))
    assert "\n" not in str(e.value)
    fashion = load("fashion")
    offered = offered_sides((28, 28), 4, 1024, lambda hw: fit_budget(fashion, layout(fashion, hw),
                                                                      Budget(parse_bytes("16GiB"), "test")) and True)
    assert max(offered["height"]) <= MAX_SIDE_TIMES * 28  # without a card's limit: 16 trained sides, not 1008
