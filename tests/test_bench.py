"""`vqforge bench`: the suites run end to end at toy sizes, results render into docs, the GPU script works on a CPU.

The original (taming-transformers-rom1504) is never installed into vqforge's environment; the tests that time it
run the bench inside the benchmark venv (`make bench-venv`) and skip with a reason where it is missing.
"""

import json
import subprocess
import sys

import pytest
import torch

from conftest import PYTHON, REPO, cli_env
from vqforge.benchmarks import original
from vqforge.benchmarks.measure import Contestant, interleave, tensor_bytes
from vqforge.benchmarks.render import combine, markers, render, render_into
from vqforge.benchmarks.rows import EXACT, FAST, ORIGINAL
from vqforge.benchmarks.runner import run_suite
from vqforge.io import VQForgeError

BENCH_PYTHON = REPO / ".bench-venv" / "bin" / "python"


def _bench_venv_reason() -> str | None:
    if not BENCH_PYTHON.is_file():
        return f"no benchmark venv at {BENCH_PYTHON} (make bench-venv)"
    res = subprocess.run([str(BENCH_PYTHON), "-c", "import taming"], capture_output=True, text=True)
    return None if res.returncode == 0 else "the benchmark venv cannot import the original (taming)"


def test_top_k_top_p_stand_in():
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    inf = float("-inf")
    assert torch.equal(original.top_k_top_p_filtering(logits, top_k=2), torch.tensor([[inf, inf, 3.0, 4.0]]))
    # softmax of [1,2,3,4] = [.032, .087, .237, .644]: top-p 0.7 keeps 4 (.644 < .7) and 3 (crosses .7)
    assert torch.equal(original.top_k_top_p_filtering(logits, top_p=0.7), torch.tensor([[inf, inf, 3.0, 4.0]]))
    # top-p smaller than the most likely token's mass still keeps that token
    assert torch.equal(original.top_k_top_p_filtering(logits, top_p=0.1), torch.tensor([[inf, inf, inf, 4.0]]))


def test_interleave_times_every_contestant_and_measures_memory():
    order = []
    big = []

    def grow():
        order.append("grow")
        big.append(torch.ones(16 * 1024 * 1024 // 4))  # 16 MiB, held until the end of the run
        big.clear()

    c1 = Contestant("a", grow)
    c2 = Contestant("b", lambda: order.append("b"), held=lambda: [torch.zeros(1024)])
    interleave([c1, c2], torch.device("cpu"), repeat=3, warmup=1)
    assert len(c1.times) == len(c2.times) == 3
    assert order[:8] == ["grow", "b"] * 4  # warm-up, then interleaved rounds
    assert len(c1.cpu_times) == 3
    if c1.peak_bytes is None:
        pytest.skip("peak resident memory cannot be reset here (/proc/self/clear_refs)")
    assert c1.peak_bytes >= 15 * 1024 * 1024  # the 16 MiB block shows in the peak
    assert c2.peak_bytes < c1.peak_bytes


def test_tensor_bytes_counts_shared_storage_once():
    w = torch.zeros(256)
    assert tensor_bytes([w, w.view(16, 16), w[:10]]) == 1024
    assert tensor_bytes([w, torch.zeros(10)]) == 1024 + 40


def test_quick_cpu_suite_runs_every_row_and_renders(one_thread):
    """Every row runs, and its numbers are what the table says: each throughput is the row's items over its
    median time, and the rendered table shows exactly those values (not only that the run did not crash)."""
    res = run_suite("cpu", torch.device("cpu"), repeat=1, quick=True, with_original=False, log=lambda s: None)
    assert [r["id"] for r in res["rows"]] == ["vqgan_train", "vqgan_reconstruct", "gpt_train", "gpt_sample_b1",
                                              "gpt_sample_b4", "fashion_e2e", "landscape_e2e"]
    for row in res["rows"]:
        assert "error" not in row, row
        assert set(row["contestants"]) == ({FAST} if row["id"].endswith("e2e") else {EXACT, FAST})
        for c in row["contestants"].values():
            assert c["median_s"] > 0 and c["throughput"] > 0
            assert c["throughput"] == pytest.approx(row["items"] / c["median_s"], rel=1e-3, abs=0.01), (row["id"], c)
    env = res["environment"]
    assert env["threads"] == 1 and env["torch"] == torch.__version__ and env["device"] == "cpu"
    json.dumps(res)  # JSON-ready
    md = render(res, "vqforge bench --suite cpu --quick")
    assert "| work | original | vqforge fp32 | ratio | vqforge fast | ratio | target |" in md
    assert md.count("\n| VQGAN") == 4 and md.count("\n| GPT") == 6  # speed and memory tables
    assert "a 64x80 landscape from a map, end to end" in md
    assert "`--quick`" in md and "not measured" in md
    for row in res["rows"]:  # the table shows the measured throughput of each contestant, in the row's unit
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {row['work']} |"))
        for c in row["contestants"].values():
            t = c["throughput"]
            shown = f"{t:,.0f}" if t >= 100 else f"{t:.1f}" if t < 10 else f"{t:.0f}"  # rounded for reading
            assert f"| {shown} {row['unit']}" in line, (line, c)


def test_levers_suite_switches_one_lever_at_a_time(one_thread):
    res = run_suite("levers", torch.device("cpu"), repeat=1, quick=True, only=["vqgan_train", "gpt_train"],
                    log=lambda s: None)
    assert res["original"] is None or all(ORIGINAL not in r["contestants"] for r in res["rows"])
    vq, gpt = res["rows"]
    assert list(vq["contestants"]) == [FAST, "precision fp32", "no channels_last", "no fused optimizer"]
    assert list(gpt["contestants"]) == [FAST, "precision fp32", "no fused optimizer"]
    assert vq["contestants"]["no channels_last"]["note"].count("channels_last") == 0
    assert "fused" not in gpt["contestants"]["no fused optimizer"]["note"]
    assert "fp32" in vq["contestants"]["precision fp32"]["note"]
    md = render(res)
    assert "| variant | median | CPU time | ÷ fast (wall) | ÷ fast (CPU time) | what ran |" in md
    assert md.count("| no fused optimizer |") == 2


def test_render_into_replaces_only_the_marked_section(tmp_path):
    res = run_suite("cpu", torch.device("cpu"), repeat=1, quick=True, only=["gpt_train"], with_original=False,
                    log=lambda s: None)
    doc = tmp_path / "benchmarks.md"
    begin, end = markers("cpu")
    doc.write_text(f"# Benchmarks\n\nintro\n\n{begin}\nold table\n{end}\n\nafter\n")
    render_into(doc, res, "the command")
    text = doc.read_text()
    assert "old table" not in text and text.startswith("# Benchmarks\n\nintro\n\n") and text.endswith("\n\nafter\n")
    assert "- Command: `the command`" in text and "train step" in text
    doc.write_text("no markers\n")
    with pytest.raises(VQForgeError, match="no '<!-- bench:cpu -->'"):
        render_into(doc, res)


def test_results_of_several_runs_render_as_one_table(one_thread):
    runs = [run_suite("cpu", torch.device("cpu"), repeat=1, quick=True, only=[row], with_original=False,
                      log=lambda s: None) for row in ("gpt_train", "gpt_sample_b1")]
    runs[0]["command"], runs[1]["command"] = "first command", "second command"
    md = render(combine(runs))
    assert "- Run 1 of 2 (rows gpt_train):" in md and "- Run 2 of 2 (rows gpt_sample_b1):" in md
    assert "`first command`" in md and "`second command`" in md
    assert md.count("\n| GPT") == 4  # both rows, in the speed and the memory table
    levers = run_suite("levers", torch.device("cpu"), repeat=1, quick=True, only=["vqgan_attention"],
                       log=lambda s: None)
    with pytest.raises(VQForgeError, match="different suites"):
        combine([runs[0], levers])


def test_unknown_row_is_a_clear_error():
    with pytest.raises(VQForgeError, match="unknown row"):
        run_suite("cpu", torch.device("cpu"), quick=True, only=["nope"], log=lambda s: None)


def test_cli_errors_are_one_line(tmp_path):
    def run(*args):
        return subprocess.run([PYTHON, "-m", "vqforge", "bench", *args], capture_output=True, text=True, env=cli_env())

    for args, needle in ((("--repeat", "2"), "choose --suite"), (("--render", str(tmp_path / "x.json")), "x.json"),
                         (("--suite", "cpu", "--repeat", "0"), "--repeat")):
        res = run(*args)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.startswith("vqforge: error:") and needle in res.stderr


GPU_ROWS = ["vqgan_train", "vqgan_reconstruct", "gpt_train", "gpt1.4b_sample_b1", "gpt1.4b_sample_b64",
            "gpt305m_sample_b1", "gpt305m_sample_b16", "gpt1.4b_sample_b16"]  # not the torch.compile rows: slow on a CPU


@pytest.mark.slow
def test_gpu_script_runs_at_toy_size_on_cpu(tmp_path):
    """bench/gpu.py --quick: the GPU rows and checks run (on the CPU here) and the three result files appear."""
    env = {**cli_env(), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([PYTHON, str(REPO / "bench" / "gpu.py"), "--quick", "--repeat", "1", "--device", "cpu",
                          "--out", str(tmp_path), "--rows", *GPU_ROWS], capture_output=True, text=True, env=env,
                         timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert [r["id"] for r in result["rows"]] == GPU_ROWS
    assert all("error" not in r for r in result["rows"])
    checks = {c["check"]: c for c in result["checks"]}
    assert set(checks) == {"compiled_decode", "bf16_training", "sliding_window"}
    assert all(c["ok"] for c in checks.values()), checks
    assert checks["bf16_training"]["both_learn"]
    md = (tmp_path / "gpu.md").read_text()
    assert "Correctness checks" in md and "compiled_decode: **ok**" in md
    assert "done in" in (tmp_path / "gpu.log").read_text()


@pytest.mark.slow
def test_bench_against_the_original_in_the_bench_venv(tmp_path):
    """In the benchmark venv the original is timed too, on the same weights (outputs agree) and inputs."""
    reason = _bench_venv_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "r.json"
    env = {**cli_env(), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([str(BENCH_PYTHON), "-m", "vqforge", "bench", "--suite", "cpu", "--quick", "--repeat", "1",
                          "--rows", "vqgan_train", "gpt_sample_b1", "--json", str(out)],
                         capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["original"] == original.PACKAGE
    for row in result["rows"]:
        assert set(row["contestants"]) == {ORIGINAL, EXACT, FAST}
        assert row["agreement"] < 1e-4  # the same weights give the same outputs
        assert row["contestants"][FAST]["speedup"] > 0


def test_synthetic_maps_take_labels_and_heights_from_the_real_maps(tmp_path):
    """bench/landscape_synthetic_maps.py (training maps for the landscapes condition stage): only the real maps'
    labels, several per map, and laid out like them: with a strong pull the label that sits on top in the real
    maps (sky) sits above the one below it (grass)."""
    import importlib.util

    import numpy as np
    from PIL import Image

    spec = importlib.util.spec_from_file_location("synmaps", REPO / "bench" / "landscape_synthetic_maps.py")
    syn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(syn)
    sky, grass, tree = 156, 123, 168
    a = np.full((40, 60), grass, np.uint8)
    a[:15] = sky
    a[25:, :20] = tree
    Image.fromarray(a, mode="L").save(tmp_path / "real.png")
    ids, share, mean_y = syn.label_stats(tmp_path)
    assert ids.tolist() == [grass, sky, tree] and share.sum() == pytest.approx(1.0)
    assert mean_y[1] < mean_y[0] and mean_y[1] < mean_y[2]
    rng = np.random.default_rng(0)
    sky_above, both = 0, 0
    for _ in range(30):
        m = syn.synthetic_map(rng, ids, share, mean_y)
        assert set(np.unique(m).tolist()) <= {grass, sky, tree}
        rows = np.arange(m.shape[0])[:, None].repeat(m.shape[1], 1)
        if (m == sky).any() and (m == grass).any():
            both += 1
            sky_above += rows[m == sky].mean() < rows[m == grass].mean()
    assert both >= 10 and sky_above >= 0.8 * both


def test_landscape_sampling_check_counts_dark_skies_and_writes_its_sheets(tmp_path, monkeypatch):
    """bench/landscape_sampling_check.py (the check a landscape transformer passes before it ships): its painted map
    is the sky label over the top 34 of 64 rows and the ground label below; a sample whose sky rows come out darker
    than --dark is counted (a stand-in sampler draws seed 1 dark), and the sheets and check.json are written."""
    import importlib.util
    import json
    import sys

    import numpy as np
    import vqforge
    from PIL import Image

    spec = importlib.util.spec_from_file_location("lsc", REPO / "bench" / "landscape_sampling_check.py")
    lsc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lsc)
    names = ["sea", "sky-other", "grass"]
    m = lsc.painted_map(names, "sky-other", "grass")
    assert m.shape == (64, 128) and (m[:34] == 1).all() and (m[34:] == 2).all()
    drawn = []

    def stand_in(net, n, cond, size, seed, top_k):  # seed 1: a night sky over a bright ground
        drawn.append((tuple(size), seed))
        a = np.full((*size, 3), 200, np.uint8)
        if seed == 1:
            a[:size[0] * 34 // 64] = 20
        return [Image.fromarray(a)]

    monkeypatch.setattr(vqforge, "sample", stand_in)
    monkeypatch.setattr(sys, "argv", ["lsc", "--model", "landscapes", "--skies", "sky-other", "--grounds", "grass",
                                      "sea", "--seeds", "0", "1", "2", "--sizes", "64x96", "--n-maps", "1",
                                      "--out", str(tmp_path)])
    lsc.main()
    result = json.loads((tmp_path / "check.json").read_text())["results"][0]
    assert [p["dark_skies"] for p in result["painted"]] == [1, 1]
    assert result["painted"][0]["samples"][1]["sky"] == 20.0 and result["painted"][0]["samples"][1]["ground"] == 200.0
    assert ((64, 96), 0) in drawn and (tmp_path / "landscapes_painted.png").exists()
    assert (tmp_path / "landscapes_64x96.png").exists()
