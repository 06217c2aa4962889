"""The decode paths against the full forward: cached fp32 (eager), packed bf16 (CPUs with native bf16), compiled
(inductor on the CPU; CUDA graphs on CUDA), in every conditioning mode and with ``n_unmasked``; the cache as the
one writer and owner of its length; the compiled step kept and given up per model.

Tolerances (max |logit difference|; logits here reach ~8): eager fp32 1e-5, compiled fp32 1e-4 (generated kernels
may sum in another order), packed bf16 1% of the largest |logit| (bf16 weights and activations). Greedy tokens
must be equal wherever the full forward's top-2 margin exceeds twice the tolerance.
"""

from __future__ import annotations

import copy
import shutil
import warnings

import pytest
import torch
import torch._dynamo

from vqforge.models.gpt import GPT, GPTConfig
from vqforge.sampling import generate as G
from vqforge.sampling.cpu import bf16_supported, packed
from vqforge.sampling.generate import EXACT, DecodeOptions, DecodeSession, decode_step, sample_tokens
from vqforge.sampling.processors import SamplingSettings

from test_sampling import MODES, model_input, tiny_net  # noqa: E402

PACKED = DecodeOptions(precision="bf16")
COMPILED = DecodeOptions(precision="fp32", compile=True)
needs_bf16 = pytest.mark.skipif(not bf16_supported(), reason="CPU without native bf16 (AVX512-BF16 / AMX)")
needs_cxx = pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")),
                               reason="no C++ compiler: inductor cannot build CPU kernels")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _tolerance(path: str, full: torch.Tensor) -> float:
    return {"eager": 1e-5, "compiled": 1e-4, "packed": 0.01 * full.abs().max().item()}[path]


def _mode_case(mode: str):
    """(gpt, seq (B, T), Tc) for conditioning mode ``mode``: its condition prefix and 16 image tokens."""
    m = tiny_net(MODES[mode], block=96)
    c = m.encode_to_c(model_input(m, 2, 16, 16))  # (B, Tc)
    z = torch.randint(0, m.n_image_codes, (2, 16), generator=torch.Generator().manual_seed(2))
    return m.transformer, torch.cat((c, z), 1)[:, :-1], c.shape[1]


def _unmasked_case(n_unmasked: int = 4):
    """A GPT whose first ``n_unmasked`` positions attend both ways, and the same weights without."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=64, block_size=96, n_layer=2, n_head=2, n_embd=32, n_unmasked=n_unmasked)
    gpt = GPT(cfg).eval()
    with torch.no_grad():  # sharp logits and attention strong enough for n_unmasked to matter downstream
        gpt.head.weight.mul_(20)
        for block in gpt.blocks:
            for lin in (block.attn.query, block.attn.key, block.attn.value, block.attn.proj):
                lin.weight.mul_(3)
    plain = GPT(GPTConfig(**{**cfg.__dict__, "n_unmasked": 0})).eval()
    plain.load_state_dict(gpt.state_dict())
    seq = torch.randint(0, 64, (2, 24), generator=torch.Generator().manual_seed(3))
    return gpt, plain, seq


def _decode(gpt: GPT, seq: torch.Tensor, Tc: int, decoding: DecodeOptions) -> torch.Tensor:
    """Logits (B, T - Tc + 1, V) for positions Tc-1 .. T-1: a prefill of the prefix, a chunk of 3, then steps."""
    dec = DecodeSession(gpt, seq.shape[0], 96, decoding)
    T = seq.shape[1]
    out = [dec.prefill(seq[:, :Tc])]
    chunk = min(3, T - Tc)
    if chunk:
        logits = dec.prefill(seq[:, Tc:Tc + chunk], start=Tc)  # a chunk after a prefix (the sliding window's case)
        out.append(logits)
    assert dec.cache.length == Tc + chunk
    for p in range(Tc + chunk, T):
        out.append(dec.step(seq[:, p:p + 1], p))
    assert dec.cache.length == T
    return torch.stack(out, 1), dec.mode


def _check(full: torch.Tensor, seq_len: int, Tc: int, got: torch.Tensor, tol: float, what) -> None:
    """``got`` follows the full forward's logits at the positions _decode returns (see there)."""
    chunk = min(3, seq_len - Tc)
    want = torch.cat((full[:, Tc - 1:Tc], full[:, Tc + chunk - 1:Tc + chunk] if chunk else full[:, :0],
                      full[:, Tc + chunk:]), 1)  # (B, n, V)
    err = (got - want).abs().max().item()
    assert err <= tol, (what, err, tol)
    top2 = want.topk(2, dim=-1).values
    clear = (top2[..., 0] - top2[..., 1]) > 2 * tol
    assert clear.float().mean() > 0.5, (what, "too few clear greedy choices for the check to mean anything")
    assert torch.equal(got.argmax(-1)[clear], want.argmax(-1)[clear]), what


@pytest.mark.parametrize("path", ["eager", pytest.param("packed", marks=needs_bf16)])
@pytest.mark.parametrize("mode", list(MODES))
def test_cached_paths_match_the_full_forward_in_every_mode(mode, path):
    gpt, seq, Tc = _mode_case(mode)
    with torch.inference_mode():
        full = gpt(seq)  # (B, T, V)
    got, used = _decode(gpt, seq, Tc, EXACT if path == "eager" else PACKED)
    assert used == {"eager": "eager", "packed": "cpu-packed-bf16"}[path]
    _check(full, seq.shape[1], Tc, got, _tolerance(path, full), (mode, path))


@pytest.mark.parametrize("path", ["eager", pytest.param("packed", marks=needs_bf16)])
def test_n_unmasked_is_honoured_by_the_cached_paths(path):
    gpt, plain, seq = _unmasked_case()
    with torch.inference_mode():
        full, causal = gpt(seq), plain(seq)
    tol = _tolerance(path, full)
    assert (full - causal)[:, 4:].abs().max() > 20 * tol  # the option changes later positions too (2 layers)
    got, _ = _decode(gpt, seq, 5, EXACT if path == "eager" else PACKED)  # the prefill covers the unmasked block
    _check(full, seq.shape[1], 5, got, tol, path)


@pytest.mark.slow
@needs_cxx
def test_compiled_decode_step_with_inductor_on_the_cpu():
    """The real compiled step (inductor, C++ kernels): every mode and n_unmasked follow the full forward; one
    graph serves every position and a second call on the same model; nothing falls back to eager."""
    torch._dynamo.reset()
    cases = [(mode, *_mode_case(mode)) for mode in MODES]
    gpt, _, seq = _unmasked_case()
    cases.append(("n_unmasked", gpt, seq, 5))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # a fallback warning fails the test
            for i, (what, gpt, seq, Tc) in enumerate(cases):
                with torch.inference_mode():
                    full = gpt(seq)
                got, used = _decode(gpt, seq, Tc, COMPILED)
                assert used == "compiled-fp32"
                _check(full, seq.shape[1], Tc, got, _tolerance("compiled", full), what)
                if i == 0:
                    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
                    assert graphs == 1, graphs  # not recompiled as the position moves
                    again, _ = _decode(gpt, seq, Tc, COMPILED)  # a second call, a new cache of the same shape
                    assert torch.equal(again, got)
                    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    finally:
        torch._dynamo.reset()


def test_a_failed_compile_falls_back_for_that_model_only(monkeypatch):
    a, b = tiny_net(MODES["class"]).transformer, tiny_net(MODES["class"], seed=1).transformer
    c = torch.tensor([[1], [4]])
    calls = []

    def broken(*args):
        raise RuntimeError("no C++ compiler\nsecond line")

    def counting(*args):
        calls.append(1)
        return decode_step(*args)

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: broken)
    with pytest.warns(UserWarning, match="compiled decode step failed .*RuntimeError: no C\\+\\+ compiler"):
        ta = sample_tokens(a, c, 8, SamplingSettings(greedy=True), decoding=COMPILED)
    assert torch.equal(ta, sample_tokens(a, c, 8, SamplingSettings(greedy=True), decoding=EXACT))
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: counting)
    sample_tokens(b, c, 8, SamplingSettings(greedy=True), decoding=COMPILED)
    assert len(calls) == 7  # b still gets its compiled step
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample_tokens(a, c, 8, SamplingSettings(greedy=True), decoding=COMPILED)  # a stays eager, silently
    assert len(calls) == 7
    assert "decode_step:cpu" not in copy.deepcopy(b).scratch  # derived state is never copied


def test_the_cache_is_written_only_through_update_and_owns_its_length(monkeypatch):
    """Every change to the cache's buffers is one that ``KVCache.update`` made: a shadow copy receives exactly the
    writes ``update`` was asked for and must equal the buffers after each prefill (a write from anywhere else, e.g.
    attention writing keys in place, would show); ``length`` follows the highest position written."""
    from vqforge.nn.kv_cache import KVCache

    gpt, _, seq = _unmasked_case(0)
    cache = gpt.new_cache(2, 24)
    shadow = {"k": cache.k.clone(), "v": cache.v.clone()}
    real_update = KVCache.update

    def update(self, layer, input_pos, k, v):
        if self is cache:
            shadow["k"][layer].index_copy_(2, input_pos, k.to(shadow["k"].dtype))
            shadow["v"][layer].index_copy_(2, input_pos, v.to(shadow["v"].dtype))
        return real_update(self, layer, input_pos, k, v)

    monkeypatch.setattr(KVCache, "update", update)

    def only_update_wrote() -> bool:
        return torch.equal(cache.k, shadow["k"]) and torch.equal(cache.v, shadow["v"])

    with torch.inference_mode():
        fresh = G.prefill(gpt, seq[:, :6], cache)
        assert cache.length == 6 and only_update_wrote()
        G.prefill(gpt, seq[:, 6:20], cache, start=6)
        assert cache.length == 20 and only_update_wrote()
        cache.reset()  # stale slots 3..19 stay in the buffers but are never attended
        assert cache.length == 0
        G.prefill(gpt, seq[:, :3], cache)
        again = G.prefill(gpt, seq[:, 3:6], cache, start=3)
        assert cache.length == 6 and only_update_wrote()
        torch.testing.assert_close(again, fresh, atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="exceed the cache"):
            G.prefill(gpt, seq[:, :4], cache, start=21)
    with pytest.raises(ValueError, match="exceeds block_size"):
        gpt.new_cache(1, 97)


@needs_bf16
def test_the_packed_copy_shares_the_weights_and_follows_their_updates():
    gpt, _, seq = _unmasked_case(0)
    keys = set(gpt.state_dict())
    twin = packed(gpt)
    assert packed(gpt) is twin and set(gpt.state_dict()) == keys  # made once; the model itself is untouched
    assert twin.tok_emb.weight is gpt.tok_emb.weight and twin.blocks[0].ln1.weight is gpt.blocks[0].ln1.weight
    with torch.no_grad():
        gpt.blocks[1].mlp[2].weight.mul_(3)  # an optimizer step would do this in place
    assert packed(gpt) is not twin
    with torch.inference_mode():
        full = gpt(seq)
    got, _ = _decode(gpt, seq, 5, PACKED)
    _check(full, seq.shape[1], 5, got, _tolerance("packed", full), "after an update")


@needs_cuda
def test_cuda_graph_step_matches_eager_and_is_compiled_once():
    """On CUDA (bf16, CUDA graphs): greedy tokens as the fp32 path's where the margin allows; one graph for every
    position and for a second call; the static cache reused."""
    torch._dynamo.reset()
    m = tiny_net(MODES["class"])
    gpt = m.transformer.cuda()
    seq = torch.randint(0, 32, (2, 40), generator=torch.Generator().manual_seed(4)).cuda()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            with torch.inference_mode():
                full = gpt(seq)
            got, used = _decode(gpt, seq, 1, DecodeOptions())
            assert used == "cuda-compiled-bf16"
            cache = gpt.scratch["static_cache"]
            _check(full, seq.shape[1], 1, got, 0.02 * full.abs().max().item(), "cuda")
            again, _ = _decode(gpt, seq, 1, DecodeOptions())
            assert torch.equal(again, got) and gpt.scratch["static_cache"] is cache
            assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    finally:
        torch._dynamo.reset()


def test_sample_tokens_names_the_block_size_a_request_needs():
    gpt = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=1, n_embd=8))
    cond = torch.zeros(1, 2, dtype=torch.long)
    assert sample_tokens(gpt, cond, 7, SamplingSettings(greedy=True), decoding=EXACT).shape == (1, 7)  # 2 + 7 - 1 = 8
    with pytest.raises(ValueError, match="need model.gpt.block_size >= 9, the GPT has 8"):
        sample_tokens(gpt, cond, 8, SamplingSettings(greedy=True), decoding=EXACT)
