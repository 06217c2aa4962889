"""The paper experiments (bench/paper/, docs/paper.md): each script runs end to end at toy size (tiny models, a few
steps, small synthetic images) and writes the results JSON the renderer reads; the renderer turns a results JSON into
the page (statement, setting, numbers with their seed range, verdict, plots); the PixelSNAIL comparison model is
causal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import cli_env

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "bench" / "paper"
sys.path.insert(0, str(PAPER))


def run_script(name: str, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"{name}.json"
    r = subprocess.run([sys.executable, str(PAPER / f"{name}.py"), "--toy", "--data", "synthetic", "--seeds", "0",
                        "--work", str(tmp_path / "work"), "--json", str(out), *args],
                       env=dict(cli_env(), OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads(out.read_text())


def check_result(res: dict, experiment: int, arms: int) -> None:
    assert res["experiment"] == experiment and res["toy"] is True
    assert {"section", "statement", "number"} <= set(res["paper"])
    assert len(res["rows"]) == arms and res["verdict"] and res["machine"]["cpu"]
    for row in res["rows"]:
        for col in res["columns"]:
            assert col in row, col


@pytest.mark.slow
def test_exp1_attention_toy(tmp_path):
    res = run_script("exp1_attention", tmp_path, "--steps", "3", "--n-eval", "0")
    check_result(res, 1, 2)
    t, p = res["rows"]
    assert (t["arm"], p["arm"]) == ("transformer", "pixelsnail")
    assert [c["step"] for c in t["curves"][0]][-1] == 3  # the held-out NLL curve reaches the last step
    assert t["test_nll"]["n"] == 1 and p["test_nll"]["mean"] > 0


@pytest.mark.slow
def test_exp1_resumes_where_it_stopped(tmp_path):
    """A run cut short continues from its checkpoint: the same curve as an uninterrupted run."""
    import common as C
    from pixelsnail import PixelSNAIL

    z, y = torch.randint(0, 16, (64, 9)), torch.randint(0, 10, (64,))
    b = C.ARBudget(steps=4, batch=8, warmup=1, eval_every=2, val_images=16)
    log = C.Log(tmp_path)

    def model():
        torch.manual_seed(0)
        return PixelSNAIL(16, 10, (3, 3), channels=16, n_blocks=1, n_res=1, embed=8)

    whole = C.train_ar(model(), (z, y), (z, y), b, tmp_path / "whole", 0, log)
    C.train_ar(model(), (z, y), (z, y), b, tmp_path / "cut", 0, log, stop_at=2)
    resumed = C.train_ar(model(), (z, y), (z, y), b, tmp_path / "cut", 0, log)
    assert [c["nll"] for c in resumed["curve"]] == pytest.approx([c["nll"] for c in whole["curve"]], abs=1e-6)


@pytest.mark.slow
def test_exp2_vocab_toy(tmp_path):
    res = run_script("exp2_vocab", tmp_path, "--vqgan-steps", "2", "--gpt-steps", "2", "--n-eval", "0",
                     "--factors", "4", "8")
    check_result(res, 2, 2)
    assert [r["seq_len"] for r in res["rows"]] == [49, 16]  # 28 px at f4, 32 px at f8


@pytest.mark.slow
def test_exp3_first_stage_toy(tmp_path):
    res = run_script("exp3_first_stage", tmp_path, "--vqgan-steps", "2", "--gpt-steps", "2", "--n-eval", "0",
                     "--perceptual", "none")
    check_result(res, 3, 6)
    assert res["rows"][0]["arm"].startswith("vqvae") and "loss.pixel_loss=l2" in res["rows"][0]["overrides"]
    assert all(0 < r["usage"]["mean"] <= 1 for r in res["rows"])


@pytest.mark.slow
def test_exp4_sampling_toy(tmp_path):
    from test_sampling import tiny_net

    from vqforge.api import save_model
    from vqforge.models.conditioning import ClassConfig

    save_model(tiny_net(ClassConfig(n_classes=10, null_class=True)), tmp_path / "model")
    res = run_script("exp4_sampling", tmp_path, "--model", str(tmp_path / "model"), "--n-eval", "0",
                     "--acceptances", "1", "0.5", "--batch", "10")
    check_result(res, 4, 5)
    rej = [r for r in res["rows"] if r["family"] == "rejection"]
    assert [r["value"] for r in rej] == [1.0, 0.5]
    assert all(0 <= r["class_match"]["mean"] <= 1 for r in res["rows"])


@pytest.mark.slow
def test_exp5_original_toy(tmp_path):
    from vqforge.benchmarks.original import available

    why = available()
    if why:
        pytest.skip(why)
    res = run_script("exp5_original", tmp_path, "--vqgan-steps", "2", "--gpt-steps", "2", "--n-eval", "8")
    check_result(res, 5, 2)
    o, v = res["rows"]
    assert (o["arm"], v["arm"]) == ("original", "vqforge")
    assert o["fid"]["n"] == 1 and v["rfid"]["mean"] is not None  # FID and rFID measured for both arms


def test_pixelsnail_is_causal_and_samples():
    from pixelsnail import PixelSNAIL, matched

    torch.manual_seed(0)
    m = PixelSNAIL(32, 10, (4, 5), channels=16, n_blocks=2, n_res=1, heads=2, embed=8).eval()
    z, y = torch.randint(0, 32, (2, 20)), torch.tensor([1, 7])
    base = m.logits(z, y).flatten(2)  # (B, V, T)
    for p in (0, 4, 13, 19):
        z2 = z.clone()
        z2[:, p:] = torch.randint(0, 32, (2, 20 - p))
        diff = (m.logits(z2, y).flatten(2) - base).abs().amax(dim=(0, 1))  # (T,)
        assert diff[:p + 1].max() == 0  # position p's prediction sees only the tokens before it
        if p < 19:
            assert diff[p + 1:].max() > 0
    out = m.sample(y, torch.Generator().manual_seed(0))
    assert out.shape == (2, 20) and out.max() < 32
    model, channels = matched(32, 10, (4, 5), target=50_000, n_blocks=1, n_res=1, embed=8)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 50_000) / 50_000 < 0.25 and channels % 8 == 0


def toy_result() -> dict:
    def spread(values):
        return {"mean": sum(values) / len(values), "min": min(values), "max": max(values), "values": values,
                "n": len(values)}

    curve = [{"step": 0, "seconds": 0.0, "nll": 6.2}, {"step": 10, "seconds": 5.0, "nll": 5.1}]
    return {"experiment": 1, "title": "Attention", "toy": False,
            "paper": {"section": "4.1", "statement": "Transformers beat PixelSNAIL.", "number": "Table 1"},
            "setting": "toy setting", "budget": {"steps": 10, "seeds": [0, 1]},
            "rows": [{"arm": "transformer", "params": 5.0e6, "test_nll": spread([5.1, 5.3]), "curves": [curve, curve]},
                     {"arm": "pixelsnail", "params": 4.9e6, "test_nll": spread([5.6]), "curves": [curve]}],
            "columns": ["params", "test_nll"], "verdict": {"equal steps": "reproduced"},
            "plots": [{"kind": "curves", "file": "exp1_nll.png", "x": ["step", "seconds"], "y": "nll",
                       "title": "held-out NLL"}],
            "machine": {"cpu": "toy cpu", "threads": 2, "date": "2026-12-07"}}


def test_render_writes_the_page_from_the_json(tmp_path):
    import render

    results = tmp_path / "results"
    results.mkdir()
    (results / "exp1_attention.json").write_text(json.dumps(toy_result()))
    (results / "exp1_attention_budget.json").write_text(json.dumps(
        {"experiment": "1", "arms": [{"arm": "transformer", "cost": "1.20 s/step", "hours": 2.0}],
         "machine": {"cpu": "toy cpu", "threads": 2, "date": "2026-12-07"}}))
    text = render.render(results, tmp_path / "docs" / "paper.md")
    assert "Transformers beat PixelSNAIL." in text and "toy setting" in text and "Table 1" in text
    assert "| transformer | 5.00 M | 5.2000 (5.1000-5.3000, n=2) |" in text  # mean (seed range, seeds)
    assert "| pixelsnail | 4.90 M | 5.6000 |" in text
    assert "equal steps: *reproduced*" in text
    assert "| 1 | transformer | 1.20 s/step | 2.0 h |" in text and "| all | | | 2 h |" in text  # the budgets
    assert "## 2. Context-rich vocabularies" in text and "Not run yet" in text  # experiments without results
    assert (tmp_path / "docs" / "paper.md").read_text() == text


def test_render_plots(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is an optional extra (pip install -e '.[bench]')")
    import render

    results = tmp_path / "results"
    results.mkdir()
    (results / "exp1_attention.json").write_text(json.dumps(toy_result()))
    text = render.render(results, tmp_path / "docs" / "paper.md")
    png = tmp_path / "docs" / "paper" / "exp1_nll.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert "![held-out NLL](paper/exp1_nll.png)" in text


@pytest.mark.slow
def test_measure_writes_the_budget(tmp_path):
    """--measure times a few steps of every arm (CPU seconds) and writes the budget the page's header shows."""
    out = tmp_path / "exp2_vocab.json"
    r = subprocess.run([sys.executable, str(PAPER / "exp2_vocab.py"), "--toy", "--data", "synthetic", "--factors", "4",
                        "--measure", "2", "--work", str(tmp_path / "work"), "--json", str(out)],
                       env=dict(cli_env(), OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not out.exists()  # no results, only the budget
    b = json.loads((tmp_path / "exp2_vocab_budget.json").read_text())
    assert b["experiment"] == "2" and b["arms"][0]["arm"].startswith("f4") and b["arms"][0]["hours"] > 0
