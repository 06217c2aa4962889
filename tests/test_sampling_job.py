"""The sampling job (issue 27): one request -> plan -> tokens -> images -> a record, the only way every front
samples. What it is for: the command line and the Python API give the same images for one request and seed;
settings.json is written by one function and read back by one; the progress callback sees every token and can
cancel a job without leaving a half-written folder; completion is a kind of request, not a second copy; the
sampling defaults live in one table."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vqforge
from vqforge.api import save_model
from vqforge.cli import main
from vqforge.imageio import pil_to_tensor, tensor_to_pil
from vqforge.models.conditioning import ClassConfig
from vqforge.sampling.defaults import SAMPLING_DEFAULTS, settings_for
from vqforge.sampling.job import plan_job, run_job
from vqforge.sampling.record import (is_sample_folder, listed_files, read_settings, sample_to_folder,
                                     settings_record)
from vqforge.sampling.request import Completion, SampleRequest

sys.path.insert(0, str(Path(__file__).parent))
from test_sampling import MODES, model_input, tiny_net  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src" / "vqforge"


@pytest.fixture(scope="module")
def carded(tmp_path_factory):
    """A class-conditional model directory whose card suggests top-k 7 and guidance 1.5."""
    d = tmp_path_factory.mktemp("carded")
    save_model(tiny_net(ClassConfig(n_classes=5, null_class=True, names=("a", "b", "c", "d", "e"))), d,
               extra={"sampling": {"top_k": 7, "cfg": 1.5}})
    return d


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_the_command_line_and_the_api_draw_the_same_images_for_one_request(carded, tmp_path, one_thread):
    """More images than one batch of the API's old default (8): both pick the batch the same way (auto, within the
    same budget), so one seed gives the same pixels, and the job run directly gives them too."""
    argv = ["sample", "--model", str(carded), "--class", "b", "d", "--num", "10", "--size", "16x24", "--seed", "4",
            "--quiet", "--out", str(tmp_path / "cli")]
    assert main(argv) == 0
    api = vqforge.sample(carded, n=10, class_=["b", "d"], size=(16, 24), seed=4)
    job = run_job(SampleRequest(vqforge.load(carded), count=10, classes=("b", "d"), size=(16, 24), seed=4))
    record = read_settings(tmp_path / "cli")
    assert record["batch_size"] == job.plan.batch_size == 10 and (record["top_k"], record["cfg"]) == (7, 1.5)
    for k in range(10):
        cli = pixels(tmp_path / "cli" / f"{k:05d}.png")
        assert np.array_equal(cli, np.asarray(api[k])) and np.array_equal(cli, np.asarray(tensor_to_pil(job.images[k])))


def test_completion_is_a_request_of_the_same_job(carded, tmp_path, one_thread):
    """`vqforge complete` and a job with the image and mask in memory (as the web app holds them) complete alike."""
    rng = np.random.default_rng(2)
    img = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[:, 8:] = 255
    Image.fromarray(img).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert main(["complete", "--model", str(carded), "--class", "c", "--data", str(tmp_path / "in.png"), "--mask",
                 str(tmp_path / "mask.png"), "--num", "2", "--seed", "9", "--quiet", "--out", str(tmp_path / "c")]) == 0
    image = pil_to_tensor(Image.fromarray(img))  # (3, H, W) in [-1, 1], as the command reads it
    model = vqforge.load(carded)
    result = run_job(SampleRequest(model, count=2, classes=("c",), seed=9,
                                   completion=Completion.of(image, torch.from_numpy(mask > 127))))
    assert result.plan.n_steps == 8 and read_settings(tmp_path / "c")["masked_tokens"] == 8
    for k in range(2):
        assert np.array_equal(pixels(tmp_path / "c" / f"{k:05d}.png"),
                              np.asarray(tensor_to_pil(result.images[k])))


def test_settings_json_round_trips_through_the_one_reader(carded, tmp_path, one_thread):
    """What :func:`settings_record` makes of a job is what :func:`read_settings` reads back from its folder, and
    ``evaluate samples`` counts exactly the files it lists."""
    from vqforge.evaluate.samples import sample_files

    request = SampleRequest(vqforge.load(carded), count=3, classes=("a", "e"), seed=1, batch_size=2, name="carded")
    result = sample_to_folder(request, tmp_path / "s")
    back = read_settings(tmp_path / "s")
    assert back == json.loads(json.dumps(settings_record(result)))
    assert back["command"] == "sample" and back["num"] == 3 and back["batch_size"] == 2 and back["model"] == "carded"
    assert [s["class_name"] for s in back["samples"]] == ["a", "e", "a"] and back["classes"] == ["a", "e"]
    assert listed_files(tmp_path / "s") == ["00000.png", "00001.png", "00002.png"] and is_sample_folder(tmp_path / "s")
    paths, how = sample_files(tmp_path / "s")
    assert [p.name for p in paths] == listed_files(tmp_path / "s") and "settings.json" in how
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "settings.json").write_text(json.dumps({"command": "encode"}))
    assert not is_sample_folder(tmp_path / "other") and read_settings(tmp_path / "nowhere") is None


def test_progress_sees_every_token_of_every_batch(carded, one_thread):
    """One step per token and batch: the job's count rises by the batch's rows to the job's total, the batch's own
    count restarts with each batch, and the grid shown is the batch's."""
    steps = []
    result = run_job(SampleRequest(vqforge.load(carded), count=3, batch_size=2, seed=0),
                     progress=lambda step: steps.append(step))
    n = result.plan.layout.n_tokens  # 16: a 4x4 grid
    assert [s.done for s in steps] == [2 * k for k in range(1, n + 1)] + [2 * n + k for k in range(1, n + 1)]
    assert all(s.total == 3 * n for s in steps) and steps[-1].done == steps[-1].total
    assert [s.batch_done for s in steps] == list(range(1, n + 1)) * 2
    assert [s.tokens.shape[0] for s in steps] == [2] * n + [1] * n


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_samples_through_the_job_at_any_size(mode, one_thread):
    """Planning (its memory estimate included: the coordinate stage is no VQGAN) and sampling, sliding too."""
    m = tiny_net(MODES[mode])
    result = run_job(SampleRequest(m, count=2, inputs=(model_input(m, 1, 16, 24),), size=(16, 24), top_k=10))
    assert result.images.shape == (2, 3, 16, 24) and result.plan.layout.sliding


class Cancel(Exception):
    pass


def test_cancel_stops_the_job_and_leaves_no_folder(carded, tmp_path, one_thread):
    """Raising from the progress callback stops the job mid-way: nothing is written, an earlier output of the
    same folder is kept whole, and no temporary folder is left beside it."""
    model = vqforge.load(carded)
    out = tmp_path / "out"
    sample_to_folder(SampleRequest(model, count=2, seed=0), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    seen = []

    def cancel_after_five(step):
        seen.append(step.done)
        if len(seen) == 5:
            raise Cancel

    with pytest.raises(Cancel):
        sample_to_folder(SampleRequest(model, count=4, seed=1), out, progress=cancel_after_five)
    assert len(seen) == 5 and {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    seen.clear()
    with pytest.raises(Cancel):
        sample_to_folder(SampleRequest(model, count=4, seed=1), tmp_path / "new", progress=cancel_after_five)
    assert not (tmp_path / "new").exists()


def test_sampling_defaults_live_in_one_table(carded):
    """Every front asks the job, and the job the card, then the one table: a request that gives nothing samples
    with the card's settings; no front builds its own SamplingSettings or names a default top-k."""
    model = vqforge.load(carded)
    plan = plan_job(SampleRequest(model))
    assert plan.settings == settings_for(model.card) and (plan.settings.top_k, plan.settings.cfg_scale) == (7, 1.5)
    assert plan.count == 8 and plan_job(SampleRequest(model, top_k=0, cfg=0)).settings.top_k is None
    bare = settings_for({})
    assert (bare.top_k, bare.top_p, bare.temperature, bare.cfg_scale) == tuple(SAMPLING_DEFAULTS.values())
    fronts = [SRC / "quick.py", SRC / "api.py", *sorted((SRC / "commands").glob("*.py")),
              *sorted((SRC / "serve").glob("*.py")), *sorted((SRC / "demo").glob("*.py")),
              SRC / "train" / "transformer.py"]
    offenders = [f"{p.relative_to(SRC)}: {m.group(0)}" for p in fronts
                 for m in re.finditer(r"SamplingSettings\(|top_k\"?\s*[:=]\s*100\b", p.read_text())]
    assert not offenders, offenders


def test_the_api_takes_a_memory_budget_as_the_command_line_does(carded):
    """vqforge.sample(max_memory=...) refuses a size over it in one line naming the largest that fits."""
    with pytest.raises(vqforge.VQForgeError, match=r"needs about .* the largest that fits is \d+x\d+") as e:
        vqforge.sample(carded, n=1, size=(4096, 4096), max_memory="16MiB")
    assert "\n" not in str(e.value)
    with pytest.raises(vqforge.VQForgeError, match="max_memory"):
        vqforge.sample(carded, max_memory="lots")
