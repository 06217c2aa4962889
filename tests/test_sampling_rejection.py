"""Classifier-based rejection sampling (`vqforge sample --reject-with C --acceptance R`): it keeps exactly the
fraction it is asked for, and the kept samples are the best-scored candidates of their class."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from vqforge.api import save_model
from vqforge.cli import main
from vqforge.evaluate.classifier import SmallClassifier, class_probability
from vqforge.io import save_safetensors
from vqforge.models.conditioning import ClassConfig
from vqforge.sampling import SamplingSettings, layout
from vqforge.sampling.pipeline import draw_batches
from vqforge.sampling.rejection import plan_rejection, rejection_batches, select

sys.path.insert(0, str(Path(__file__).parent))
from test_sampling import tiny_net  # noqa: E402


def brightness(images: torch.Tensor, picks: list[int]) -> torch.Tensor:
    """A stub classifier's score: the mean pixel value (B,)."""
    return images.float().mean(dim=(1, 2, 3))


@pytest.mark.parametrize("n,k,r", [(12, 3, 0.25), (8, 8, 0.5), (10, 1, 0.1), (6, 4, 1.0), (9, 3, 0.3)])
def test_plan_keeps_exactly_the_fraction_asked_for(n, k, r):
    plan = plan_rejection(n, k, r)
    assert plan.n_kept == n and plan.n_candidates == round(n / r)
    assert plan.realised == pytest.approx(r, abs=1e-12)  # n / r is whole in every case here: exactly r
    counts = [plan.inputs.count(j) for j in range(k)]
    assert all(c >= want for c, want in zip(counts, plan.keep))  # every input has enough candidates


def test_plan_when_n_over_r_is_not_whole_keeps_n_of_the_next_whole_number():
    plan = plan_rejection(10, 10, 0.3)  # 33.3 candidates: 34 drawn, 10 kept
    assert (plan.n_candidates, plan.n_kept) == (34, 10) and plan.realised <= 0.3
    with pytest.raises(ValueError, match="acceptance"):
        plan_rejection(4, 2, 0.0)
    with pytest.raises(ValueError, match="acceptance"):
        plan_rejection(4, 2, 1.5)


def test_select_keeps_the_best_of_each_input_in_the_jobs_order():
    plan = plan_rejection(4, 2, 0.5)  # candidates 0..7, inputs 0,1,0,1,...; keep 2 of each
    scores = torch.tensor([0.1, 0.9, 0.8, 0.2, 0.5, 0.7, 0.3, 0.1])
    kept = select(scores, plan).tolist()
    # input 0 (candidates 0, 2, 4, 6): best 2 then 4; input 1 (1, 3, 5, 7): best 1 then 5; order s % 2
    assert kept == [2, 1, 4, 5]


@torch.no_grad()
def test_rejection_sampler_keeps_the_best_fraction_on_a_stub_classifier():
    model = tiny_net(ClassConfig(n_classes=5))
    lay = layout(model, (16, 16))
    inputs = [torch.tensor([c]) for c in (1, 3)]
    settings = SamplingSettings(top_k=20)
    plan = plan_rejection(6, len(inputs), 0.25)  # 24 candidates, 6 kept: 3 per class
    # the same candidates, drawn plainly with the same seed, to know every score
    cands = [inputs[j] for j in plan.inputs]
    drawn = torch.cat([x for _, x in draw_batches(model, lay, cands, plan.n_candidates, 5, settings,
                                                  torch.Generator().manual_seed(3))])
    all_scores = brightness(drawn, [])
    scores: list[float] = []
    out = list(rejection_batches(model, lay, inputs, plan, 5, settings, brightness, torch.Generator().manual_seed(3),
                                 scores_out=scores))
    picks = [j for p, _ in out for j in p]
    images = torch.cat([x for _, x in out])
    assert len(images) == 6 and len(images) / plan.n_candidates == 0.25  # exactly the accepted fraction
    assert picks == [0, 1, 0, 1, 0, 1]  # the job's order: classes cycle as without rejection
    for j in range(2):
        mine = torch.tensor([i for i, o in enumerate(plan.inputs) if o == j])
        best = all_scores[mine].sort(descending=True).values[:3]
        got = torch.tensor([s for s, p in zip(scores, picks) if p == j])
        assert torch.allclose(got, best)  # the top quarter of that class's candidates, best first
        assert torch.allclose(brightness(images[[i for i, p in enumerate(picks) if p == j]], []), best)


def test_class_probability_reads_any_channels_and_size():
    torch.manual_seed(0)
    clf = SmallClassifier()
    p = class_probability(clf, torch.rand(3, 3, 32, 32) * 2 - 1, torch.tensor([0, 4, 9]))
    assert p.shape == (3,) and bool(((p > 0) & (p < 1)).all())


def test_sample_cli_reject_with(tmp_path):
    model_dir = tmp_path / "model"
    save_model(tiny_net(ClassConfig(n_classes=5)), model_dir)
    torch.manual_seed(0)
    save_safetensors(tmp_path / "clf.safetensors", SmallClassifier().state_dict())
    out = tmp_path / "out"
    assert main(["sample", "--model", str(model_dir), "--num", "4", "--class", "0", "2", "--reject-with",
                 str(tmp_path / "clf.safetensors"), "--acceptance", "0.5", "--batch-size", "3", "--quiet",
                 "--device", "cpu", "--out", str(out)]) == 0
    s = json.loads((out / "settings.json").read_text())
    assert s["rejection"]["candidates"] == 8 and s["rejection"]["kept"] == 4
    assert s["rejection"]["kept_fraction"] == 0.5
    assert [x["class"] for x in s["samples"]] == [0, 2, 0, 2]
    assert all(0 < x["score"] < 1 for x in s["samples"])
    assert len(list(out.glob("0*.png"))) == 4


def test_sample_cli_rejection_errors(tmp_path, capsys):
    model_dir = tmp_path / "model"
    save_model(tiny_net(ClassConfig(n_classes=5)), model_dir)
    base = ["sample", "--model", str(model_dir), "--num", "2", "--quiet", "--device", "cpu"]
    assert main([*base, "--acceptance", "0.5", "--out", str(tmp_path / "a")]) != 0
    assert "--acceptance needs --reject-with" in capsys.readouterr().err
    assert main([*base, "--reject-with", "fashion", "--acceptance", "2", "--out", str(tmp_path / "b")]) != 0
    assert "--acceptance" in capsys.readouterr().err
