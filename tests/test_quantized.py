"""Weight-only int8 / int4 decoding against fp32, with tolerances derived from each format's quantisation step.

A quantised weight differs from the fp32 one by its rounding error, at most half a step (int8: the row's scale
``s``; int4: the group's ``s``). So a layer's output may differ by at most ``sum_k |x_k| * s_k / 2`` (plus the bf16
rounding of input and output on the CPU kernels), checked for each layer form. For a whole trained model the
rounding errors act like uniform noise of +-half a step on each weight: the logit tolerance is three times the
largest logit change that such noise causes on the fp32 model (plus the packed bf16 path's allowance, 1% of the
largest |logit|), and greedy tokens must equal fp32's wherever fp32's top-2 margin exceeds twice that tolerance.
"""

from __future__ import annotations

import copy

import pytest
import torch

from vqforge.models.gpt import GPT, GPTConfig
from vqforge.sampling.generate import DecodeOptions, DecodeSession, decode_path, sample_tokens
from vqforge.sampling.processors import SamplingSettings
from vqforge.sampling.quantized import (DENSE_ROWS, Int4Linear, Int8Linear, dequantize_int4, dequantize_int8,
                                        layer_formats, quantize_int4, quantize_int8, quantized, set_dense_rows,
                                        weight_bytes)


def _bf16_allowance(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """bf16 rounding of the input and the output: 2 * 2^-8 of sum_k |w_k x_k| per output (N_rows, out)."""
    return 2 * 2.0 ** -8 * (x.abs() @ w.abs().t())


@pytest.mark.parametrize("kind", ["int8", "int4-kernel", "int4-dequant", "int4-g128"])
def test_layer_within_half_a_step(kind):
    torch.manual_seed(0)
    w, b, x = torch.randn(256, 512) * 0.05, torch.randn(256) * 0.1, torch.randn(3, 512)
    if kind == "int8":
        layer = Int8Linear(w, b)
        _, s = quantize_int8(w)
        step_err = 0.5 * x.abs().sum(1, keepdim=True) * s[None]  # (3, out)
    else:
        group = 128 if kind == "int4-g128" else 32
        layer = Int4Linear(w, b, group=group, kernel=kind != "int4-dequant")
        _, s, _ = quantize_int4(w, group)  # (out, in/g)
        xg = x.abs().reshape(3, -1, group).sum(-1)  # (3, in/g)
        step_err = 0.5 * xg @ s.t()
    ref = x @ w.t() + b
    err = (layer(x).float() - ref).abs()
    bound = step_err + _bf16_allowance(w, x) + 2.0 ** -8 * b.abs()
    assert (err <= bound).all(), f"{kind}: error {err.max():.4g} beyond the half-step bound"
    assert err.max() > 0  # it did quantise


def test_int4_kernel_equals_its_dequantised_form():
    torch.manual_seed(1)
    w, x = torch.randn(64, 256), torch.randn(5, 256)
    q, s, z = quantize_int4(w)
    ref = x @ dequantize_int4(q, s, z).t()
    for kernel in (True, False):
        got = Int4Linear(w, None, kernel=kernel)(x).float()
        assert (got - ref).abs().max() <= 0.02 * ref.abs().max()
    q8, s8 = quantize_int8(w)
    assert (dequantize_int8(q8, s8) - w).abs().max() <= s8.max() / 2 + 1e-6


def test_tall_inputs_take_the_shared_fp32_weight():
    """Beyond DENSE_ROWS rows a quantised layer on a CPU multiplies by the fp32 weight (a prefill at fp32's rate)."""
    torch.manual_seed(0)
    w, x = torch.randn(64, 128), torch.randn(DENSE_ROWS + 1, 128)
    for layer in (Int8Linear(w, None), Int4Linear(w, None)):
        assert torch.allclose(layer(x), x @ w.t(), atol=1e-5)
        assert not torch.allclose(layer(x[:DENSE_ROWS]), x[:DENSE_ROWS] @ w.t(), atol=1e-3)


def test_weight_bytes_and_formats():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=64)).eval()
    fp32 = weight_bytes(gpt)
    i8, i4 = quantized(gpt, "int8"), quantized(gpt, "int4")
    assert quantized(gpt, "int8") is i8  # made once per model
    assert weight_bytes(i8) < 0.3 * fp32 and weight_bytes(i4) < weight_bytes(i8)
    assert set(layer_formats(i4).values()) == {"int4 g32"} and set(layer_formats(i8).values()) == {"int8"}
    odd = GPT(GPTConfig(vocab_size=60, block_size=16, n_layer=1, n_head=2, n_embd=48)).eval()
    assert layer_formats(quantized(odd, "int4"))["head"] == "int8"  # 60 outputs: not for the int4 kernel


def test_decode_paths_and_options():
    assert decode_path("cpu", DecodeOptions("int8")) == "cpu-int8"
    assert decode_path("cpu", DecodeOptions("int4")) == "cpu-int4"
    assert decode_path("cuda", DecodeOptions("int4")) == "cuda-compiled-int4"
    assert decode_path("cuda", DecodeOptions("int8", compile=False)) == "cuda-int8"
    with pytest.raises(ValueError, match="group size"):
        DecodeOptions("int4", group=48)
    with pytest.raises(ValueError, match="int8, int4"):
        DecodeOptions("int2")


# ------------------------------------------------------------------------------------- a trained bundled model
@pytest.fixture(scope="module")
def fashion():
    from vqforge import load

    model = load("fashion")
    gpt = model.transformer.eval()
    g = torch.Generator().manual_seed(0)
    cond = torch.arange(10).repeat(2)[:, None]  # every class twice: (20, 1)
    seq = sample_tokens(gpt, cond, 48, SamplingSettings(top_k=100), g, n_vocab=model.n_image_codes,
                        decoding=DecodeOptions("fp32"))
    return gpt, torch.cat((cond, seq), 1)[:, :-1]  # (20, 48): a class token and 47 sampled image tokens


def _noise_tolerance(gpt: GPT, precision: str, tokens: torch.Tensor, full: torch.Tensor) -> float:
    """3 x the largest logit change under uniform noise of +-half the quantisation step on every weight the format
    quantises, + the bf16 path's 1% of the largest |logit| (see the module text)."""
    noisy = copy.deepcopy(gpt)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for lin in [m for m in noisy.modules() if isinstance(m, torch.nn.Linear)]:
            w = lin.weight
            if precision == "int8":
                step = quantize_int8(w)[1][:, None].expand_as(w)
            else:
                s = quantize_int4(w)[1]  # (out, in/g)
                step = s.repeat_interleave(w.shape[1] // s.shape[1], 1)
            w.add_((torch.rand(w.shape, generator=g) - 0.5) * step)
        changed = (noisy(tokens) - full).abs().max().item()
    return 3 * changed + 0.01 * full.abs().max().item()


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_trained_model_logits_and_greedy_tokens(fashion, precision):
    gpt, tokens = fashion
    with torch.no_grad():
        full = gpt(tokens)  # (B, T, V) fp32
        tol = _noise_tolerance(gpt, precision, tokens, full)
        net = quantized(gpt, precision)
        set_dense_rows(net, None)  # every product quantised, prefills too
        try:
            got = net(tokens).float()  # the quantised copy's full forward (prefill)
            dec = DecodeSession(gpt, tokens.shape[0], tokens.shape[1], DecodeOptions(precision))
            assert dec.mode == f"cpu-{precision}"
            stepped = [dec.prefill(tokens[:, :8])]
            for p in range(8, tokens.shape[1]):
                stepped.append(dec.step(tokens[:, p:p + 1], p))
            stepped = torch.stack(stepped, 1)  # (B, T - 7, V): the cached decode steps
        finally:
            set_dense_rows(net, DENSE_ROWS)
    err = (got - full).abs().max().item()
    assert err <= tol, f"{precision}: logits off by {err:.3f}, tolerance {tol:.3f}"
    assert (stepped - full[:, 7:]).abs().max().item() <= tol
    top2 = full.topk(2, -1).values
    sure = (top2[..., 0] - top2[..., 1]) > 2 * tol  # fp32's choice is clear beyond the tolerance
    assert sure.any()
    assert (got.argmax(-1) == full.argmax(-1))[sure].all()
    agree = (got.argmax(-1) == full.argmax(-1)).float().mean().item()
    assert agree >= {"int8": 0.95, "int4": 0.8}[precision], f"{precision}: greedy agreement {agree:.2f}"


# ------------------------------------------------------------------------------------- command line and batching
def test_sample_cli_int_precisions_and_auto_batch(tmp_path):
    """--precision int8/int4 sample through the quantised copies (recorded in settings.json); --batch-size auto
    draws every sample of a small job in one batch."""
    import json

    from vqforge.cli import main

    for precision in ("int8", "int4"):
        out = tmp_path / precision
        args = ["sample", "--model", "fashion", "--num", "5", "--class", "bag", "--precision", precision, "--seed", "1",
                "--quiet", "--out", str(out)]
        assert main(args) == 0
        record = json.loads((out / "settings.json").read_text())
        assert record["decode_path"] == f"cpu-{precision}" and record["batch_size"] == 5


def test_auto_batch_size_follows_the_budget():
    """--batch-size auto is the one memory estimate's (sampling.memory.job_bytes): the largest batch, at most
    MAX_AUTO_BATCH (64), halved until the job fits the budget."""
    from vqforge import load
    from vqforge.memory import Budget
    from vqforge.sampling.memory import MAX_AUTO_BATCH, auto_batch_size, fit_batches, job_bytes, peak
    from vqforge.sampling.pipeline import layout

    model = load("fashion")
    lay = layout(model)
    assert peak(job_bytes(model, lay, 8, 64, guided=True)) > peak(job_bytes(model, lay, 8, 64))
    between = Budget((peak(job_bytes(model, lay, 8, 64)) + peak(job_bytes(model, lay, 16, 64))) // 2, "test")
    assert auto_batch_size(model, lay, 64, between) == 8
    assert fit_batches(model, lay, between, None, 64)[1] == 8  # the command line's auto
    assert auto_batch_size(model, lay, 64, Budget(0, "test")) == 1
    huge = Budget(1 << 40, "test")
    assert MAX_AUTO_BATCH == 64  # 64 guided fashion images as one batch: half the original's steps at its 32
    assert auto_batch_size(model, lay, 3, huge) == 3 and auto_batch_size(model, lay, 1000, huge) == 64


def test_auto_on_a_cpu_is_measured_once_per_machine(tmp_path, monkeypatch):
    """auto's choice on a CPU is kept under the CPU's signature, so every run on the machine takes the same path."""
    import json

    from vqforge.sampling import generate as G

    monkeypatch.setenv("VQFORGE_HOME", str(tmp_path))
    G.cpu_auto_precision.cache_clear()
    key = f"{G._cpu_signature()} | {' '.join(G.AUTO_CPU)}"
    (tmp_path / "cpu_decode.json").write_text(json.dumps({key: {"precision": "int8"}}))
    try:
        assert decode_path("cpu", DecodeOptions()) == "cpu-int8"
        assert decode_path("cpu", DecodeOptions(), measure=False) in ("cpu-packed-bf16", "eager")  # no timing
    finally:
        G.cpu_auto_precision.cache_clear()
