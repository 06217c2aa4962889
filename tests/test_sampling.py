"""Sampling: logits processors, the sampling loop, sliding windows, completion (decode paths: test_decode.py)."""

from __future__ import annotations

import pytest
import torch

from vqforge.models.conditioning import (ClassConfig, ConditionConfig, CoordConfig, DepthConfig, EdgesConfig,
                                        LowresConfig, SegmentationConfig, UnconditionalConfig)
from vqforge.models.gpt import GPTConfig
from vqforge.models.transformer import Net2NetTransformer, TransformerConfig
from vqforge.models.vqgan import AutoencoderConfig, VQGANConfig
from vqforge.quantizers import VQConfig
from vqforge.sampling import processors as P
from vqforge.sampling.complete import complete_tokens, token_mask
from vqforge.sampling.generate import EXACT, sample_tokens
from vqforge.sampling.pipeline import condition_tokens, layout, sample_images
from vqforge.sampling.sliding import WindowedCondition, cond_window, sample_sliding, window_bounds, window_offset


# ------------------------------------------------------------------------------------------ helpers
def tiny_vq(in_ch=3, n_embed=32, ch_mult=(1, 2, 2), resolution=16) -> VQGANConfig:
    dd = AutoencoderConfig(ch=32, ch_mult=ch_mult, num_res_blocks=1, attn_resolutions=(), in_channels=in_ch,
                           resolution=resolution, z_channels=8)
    return VQGANConfig(ddconfig=dd, quantizer=VQConfig(n_embed=n_embed, embed_dim=8))


def tiny_net(cond: ConditionConfig, block=96, seed=0) -> Net2NetTransformer:
    """f4 first stage trained at 16 px: a 4x4 token window."""
    torch.manual_seed(seed)
    gpt = GPTConfig(vocab_size=64, block_size=block, n_layer=2, n_head=2, n_embd=32)
    m = Net2NetTransformer(TransformerConfig(gpt=gpt, first_stage=tiny_vq(), cond=cond)).eval()
    with torch.no_grad():  # sharper logits than the init, so that greedy choices are well separated
        m.transformer.head.weight.mul_(20)
        m.transformer.tok_emb.weight.mul_(20)
    return m


MODES = {
    "unconditional": UnconditionalConfig(sos_token=3),
    "class": ClassConfig(n_classes=10),
    "segmentation": SegmentationConfig(n_labels=5, cond_stage=tiny_vq(5, ch_mult=(1, 2, 2))),
    "depth": DepthConfig(cond_stage=tiny_vq(1, ch_mult=(1, 2))),
    "edges": EdgesConfig(cond_stage=tiny_vq(1)),
    "lowres": LowresConfig(lowres_factor=2, cond_stage=tiny_vq(3, ch_mult=(1, 2))),
    "coord": CoordConfig(coord_n_embed=60, coord_down_factor=4),
}


def model_input(m: Net2NetTransformer, B: int, H: int, W: int) -> torch.Tensor:
    """A model input condition for mode ``m.mode`` at image size H x W."""
    g = torch.Generator().manual_seed(1)
    images = torch.rand(B, 3, H, W, generator=g) * 2 - 1
    mode = m.mode
    if mode == "class":
        return m.build_condition(raw=torch.tensor([1, 7, 2, 0][:B]))
    if mode == "segmentation":
        return m.build_condition(raw=torch.randint(0, 5, (B, H, W), generator=g))
    if mode == "depth":
        return m.build_condition(raw=torch.rand(B, 1, H, W, generator=g))
    return m.build_condition(images=images)


# ----------------------------------------------------------------------------------------- processors
def test_top_k_keeps_k_largest_and_ties_and_does_not_mutate():
    logits = torch.tensor([[1.0, 5.0, 3.0, 3.0, -2.0]])
    before = logits.clone()
    out = P.top_k(logits, 2)
    assert torch.equal(logits, before)
    assert torch.isinf(out[0, [0, 4]]).all() and torch.equal(out[0, 1:4], logits[0, 1:4])  # the tie at 3 survives
    assert torch.equal(P.top_k(logits, None), logits) and torch.equal(P.top_k(logits, 99), logits)


def test_top_p_keeps_smallest_nucleus_with_and_without_top_k():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    keep = lambda out: (~torch.isinf(out[0])).tolist()  # noqa: E731
    assert keep(P.top_p(logits, 0.45)) == [True, False, False, False]  # the first token alone passes 0.45
    assert keep(P.top_p(logits, 0.7)) == [True, True, False, False]
    assert keep(P.top_p(logits, 0.9)) == [True, True, True, False]
    assert keep(P.top_p(logits, 0.01)) == [True, False, False, False]  # the most likely token always stays
    assert keep(P.top_p(P.top_k(logits, 2), 0.99)) == [True, True, False, False]  # composes with top-k
    # the original applied top-p only together with top-k; both behaviours are available
    s_new = P.SamplingSettings(top_p=0.45)
    s_old = P.SamplingSettings(top_p=0.45, top_p_needs_top_k=True)
    assert keep(P.process_logits(logits, s_new)) == [True, False, False, False]
    assert keep(P.process_logits(logits, s_old)) == [True] * 4


def test_restrict_temperature_guidance_and_pick():
    logits = torch.tensor([[0.0, 1.0, 9.0, 2.0]])
    r = P.restrict_vocab(logits, 2)
    assert torch.isinf(r[0, 2:]).all() and P.pick(r, greedy=True).item() == 1
    assert torch.allclose(P.temperature(logits, 2.0), logits / 2)
    cond, uncond = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 0.0]])
    assert torch.equal(P.classifier_free_guidance(cond, uncond, 0.0), cond)
    assert torch.allclose(P.classifier_free_guidance(cond, uncond, 2.0), torch.tensor([[-3.0, 6.0]]))
    both = torch.cat((cond, uncond))
    assert torch.allclose(P.split_guidance(both, 2.0), torch.tensor([[-3.0, 6.0]]))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x = torch.randn(8, 50)
    assert torch.equal(P.pick(x, False, g1), P.pick(x, False, g2))
    with pytest.raises(ValueError):
        P.SamplingSettings(temperature=0)
    with pytest.raises(ValueError):
        P.SamplingSettings(top_p=1.5)


def test_pick_draws_from_the_processed_distribution():
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    logits = probs.log().expand(40000, 4)  # the zero-probability token has logit -inf
    draws = P.pick(logits, False, torch.Generator().manual_seed(0))[:, 0]
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    assert freq[3] == 0 and torch.allclose(freq, probs, atol=0.01), freq


# ------------------------------------------------------------------------------------ sampling loop
def test_sample_tokens_is_seeded_and_batched():
    m = tiny_net(MODES["class"])
    c = torch.tensor([[1], [4], [1]])
    s = P.SamplingSettings(top_k=20, top_p=0.9)
    a = sample_tokens(m.transformer, c, 16, s, torch.Generator().manual_seed(0), n_vocab=32)
    b = sample_tokens(m.transformer, c, 16, s, torch.Generator().manual_seed(0), n_vocab=32)
    d = sample_tokens(m.transformer, c, 16, s, torch.Generator().manual_seed(1), n_vocab=32)
    assert a.shape == (3, 16) and torch.equal(a, b) and not torch.equal(a, d)
    assert int(a.max()) < 32  # restricted to image codes


def test_guidance_runs_both_halves_in_one_batch():
    m = tiny_net(ClassConfig(n_classes=10, null_class=True))
    c, un = torch.tensor([[2], [5]]), torch.full((2, 1), 10)
    greedy0 = sample_tokens(m.transformer, c, 16, P.SamplingSettings(greedy=True), decoding=EXACT)
    guided0 = sample_tokens(m.transformer, c, 16, P.SamplingSettings(greedy=True, cfg_scale=0.0), uncond=un,
                             decoding=EXACT)
    assert torch.equal(greedy0, guided0)  # scale 0 is the plain conditional model
    # scale s: greedy token = argmax(cond + s (cond - uncond)), checked step by step against full forwards
    s = 3.0
    z = sample_tokens(m.transformer, c, 6, P.SamplingSettings(greedy=True, cfg_scale=s), uncond=un, decoding=EXACT)
    with torch.inference_mode():
        for n in range(6):
            lc = m.transformer(torch.cat((c, z[:, :n]), 1))[:, -1]
            lu = m.transformer(torch.cat((un, z[:, :n]), 1))[:, -1]
            assert torch.equal((lc + s * (lc - lu)).argmax(-1), z[:, n])


# ---------------------------------------------------------------------------------------- sliding
def original_rule(i: int, n: int, W: int) -> int:
    """The placement rule as the issue states it (for the original's W = 16: i <= 8, n - i < 8, else 8)."""
    if i <= W / 2:
        return i
    if n - i < W / 2:
        return W - (n - i)
    return W // 2


def test_window_placement_rule():
    for W in (4, 5, 16):
        for n in (W + 1, 2 * W, 3 * W + 1, 80):
            for i in range(n):
                local = window_offset(i, n, W)
                assert local == original_rule(i, n, W)
                start, loc = window_bounds(i, n, W)
                assert 0 <= start and start + W <= n and start + loc == i  # windows stay on the grid
    assert [window_offset(i, 3, 16) for i in range(3)] == [0, 1, 2]  # grid smaller than the window


@pytest.mark.parametrize("mode", ["unconditional", "class", "segmentation"])
def test_greedy_sliding_with_full_window_equals_plain(mode):
    m = tiny_net(MODES[mode])
    lay = layout(m, (16, 16))
    assert not lay.sliding and lay.window_hw == (4, 4)
    c, _ = condition_tokens(m, lay, 2, classes=torch.tensor([3, 8]), cond=model_input(m, 2, 16, 16))
    greedy = P.SamplingSettings(greedy=True)
    plain = sample_tokens(m.transformer, c.reshape(2, -1), 16, greedy, n_vocab=32, decoding=EXACT).view(2, 4, 4)
    for reuse in (False, True):
        slid = sample_sliding(m.transformer, c, (4, 4), (4, 4), greedy, n_vocab=32, reuse_cache=reuse, decoding=EXACT)
        assert torch.equal(slid, plain), reuse


@pytest.mark.parametrize("mode", ["class", "segmentation", "lowres"])
def test_sliding_cache_reuse_equals_fresh_windows(mode):
    """A 6x7 grid under a 4x4 window: reusing a window's cache gives the tokens a fresh forward gives."""
    m = tiny_net(MODES[mode])
    lay = layout(m, (24, 28))
    assert lay.sliding and lay.grid_hw == (6, 7)
    c, _ = condition_tokens(m, lay, 2, classes=torch.tensor([3, 8]), cond=model_input(m, 2, 24, 28))
    greedy = P.SamplingSettings(greedy=True)
    a = sample_sliding(m.transformer, c, lay.grid_hw, lay.window_hw, greedy, n_vocab=32, reuse_cache=True,
                       decoding=EXACT)
    b = sample_sliding(m.transformer, c, lay.grid_hw, lay.window_hw, greedy, n_vocab=32, reuse_cache=False,
                       decoding=EXACT)
    assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["class", "segmentation"])
@pytest.mark.parametrize("batch_bytes", [None, 1])
def test_sliding_row_batched_windows_equal_fresh_windows_under_guidance(mode, batch_bytes, monkeypatch):
    """A 6x9 grid under a 4x4 window, with guidance: the windows of a row prefilled together in one batch (or one
    at a time, when the window batch's memory allows only one) and then fed target by target give the tokens a
    fresh forward of every window gives; and a row's windows do go through the GPT as one batch."""
    from vqforge.sampling import generate, sliding
    if batch_bytes:
        monkeypatch.setattr(sliding, "WINDOW_BATCH_BYTES", batch_bytes)
    m = tiny_net(MODES[mode])
    lay = layout(m, (24, 36))
    assert lay.sliding and lay.grid_hw == (6, 9)
    c, _ = condition_tokens(m, lay, 2, classes=torch.tensor([3, 8]), cond=model_input(m, 2, 24, 36))
    grid = sliding.token_grid(c)
    un = (grid + 1) % 10 if grid.dim() == 2 else grid.flip(-1)  # another condition as the guidance's other half
    greedy = P.SamplingSettings(greedy=True, cfg_scale=2.0)
    batches = []
    real_prefill = generate.prefill
    monkeypatch.setattr(generate, "prefill", lambda net, t, cache, start=0: (batches.append(t.shape[0]),
                                                                               real_prefill(net, t, cache, start))[1])
    a = sample_sliding(m.transformer, c, lay.grid_hw, lay.window_hw, greedy, uncond=un, n_vocab=32, decoding=EXACT)
    widest = max(batches)
    b = sample_sliding(m.transformer, c, lay.grid_hw, lay.window_hw, greedy, uncond=un, n_vocab=32,
                       reuse_cache=False, decoding=EXACT)
    assert torch.equal(a, b)
    assert widest == (4 if batch_bytes else 6 * 4)  # 2 images x 2 halves; a row visits 6 windows (starts 0..5)


@pytest.mark.parametrize("mode", ["segmentation", "lowres"])
def test_windowed_condition_gives_each_window_its_own_crops_tokens(mode):
    """cond_encoding="window" (default): each window's condition tokens are the stage's tokens for that window's
    crop of the input alone, as training encoded its crops; "whole" cuts the whole input's tokens (the original's
    way). The two differ: the stage's group norms see the whole map in one and the crop in the other."""
    m = tiny_net(MODES[mode])
    x = model_input(m, 2, 24, 28)
    lay = layout(m, (24, 28))
    cw, _ = condition_tokens(m, lay, 2, cond=x)
    cg, _ = condition_tokens(m, layout(m, (24, 28), cond_encoding="whole"), 2, cond=x)
    assert isinstance(cw, WindowedCondition) and torch.is_tensor(cg) and torch.equal(cw.grid, cg)
    (h, w), (wh, ww) = lay.grid_hw, lay.window_hw
    differ = 0
    for i0, j0 in {(window_bounds(i, h, wh)[0], window_bounds(j, w, ww)[0]) for i in range(h) for j in range(w)}:
        rows, cols = (i0, i0 + wh), (j0, j0 + ww)
        f = x.shape[-2] // h  # input pixels per condition token (lowres: the input is the downsampled photo)
        crop = x[..., i0 * f:(i0 + wh) * f, j0 * f:(j0 + ww) * f]
        assert torch.equal(cond_window(cw, lay.grid_hw, rows, cols), m.encode_to_c(crop))
        cut = cond_window(cg, lay.grid_hw, rows, cols)
        assert torch.equal(cut, cg[:, i0:i0 + wh, j0:j0 + ww].reshape(2, -1))
        differ += not torch.equal(cut, m.encode_to_c(crop))
    assert differ > 0
    with pytest.raises(ValueError, match="window, whole"):
        layout(m, (24, 28), cond_encoding="tiles")


def test_windowed_condition_changes_nothing_for_a_context_free_stage():
    """Coordinates are quantised pixel by pixel: window by window or whole, the samples are the same."""
    m = tiny_net(MODES["coord"])
    lay, whole = layout(m, (24, 28)), layout(m, (24, 28), cond_encoding="whole")
    s = P.SamplingSettings(top_k=10)
    cw, _ = condition_tokens(m, lay, 2)
    cg, _ = condition_tokens(m, whole, 2)
    assert isinstance(cw, WindowedCondition)
    _, zw = sample_images(m, lay, cw, s, torch.Generator().manual_seed(3))
    _, zg = sample_images(m, whole, cg, s, torch.Generator().manual_seed(3))
    assert torch.equal(zw, zg)


def test_sliding_target_sees_its_window_through_the_original_rule():
    """The logits of token (i, j) are the GPT's at the target's place in its window (checked for one token)."""
    m = tiny_net(MODES["unconditional"])
    h, w, W = 7, 9, 4
    z = sample_sliding(m.transformer, torch.full((1, 1), 3), (h, w), (W, W), P.SamplingSettings(greedy=True),
                       n_vocab=32, decoding=EXACT)
    for i in range(h):
        for j in range(w):
            i0, li = window_bounds(i, h, W)
            j0, lj = window_bounds(j, w, W)
            window = z[:, i0:i0 + W, j0:j0 + W].reshape(1, -1)[:, :li * W + lj]
            with torch.inference_mode():
                logits = m.transformer(torch.cat((torch.full((1, 1), 3), window), 1))[:, -1, :32]
            assert logits.argmax(-1).item() == z[0, i, j].item(), (i, j)


def test_high_resolution_size_and_seed():
    m = tiny_net(MODES["class"])
    lay = layout(m, (64, 64))  # 4x the trained 4x4 token grid each way
    assert lay.grid_hw == (16, 16) and lay.window_hw == (4, 4) and lay.sliding
    c, _ = condition_tokens(m, lay, 2, classes=torch.tensor([1, 2]))
    s = P.SamplingSettings(top_k=10)
    x1, z1 = sample_images(m, lay, c, s, torch.Generator().manual_seed(3))
    x2, z2 = sample_images(m, lay, c, s, torch.Generator().manual_seed(3))
    _, z3 = sample_images(m, lay, c, s, torch.Generator().manual_seed(4))
    assert x1.shape == (2, 3, 64, 64) and torch.equal(x1, x2) and torch.equal(z1, z2) and not torch.equal(z1, z3)
    with pytest.raises(ValueError, match="multiple"):
        layout(m, (30, 32))


# --------------------------------------------------------------------------------------- completion
def test_token_mask_any_pixel_rule():
    pix = torch.zeros(8, 12)
    pix[5, 1] = 1  # one pixel in token (1, 0) of a f4 grid
    pix[0:4, 8:12] = 1  # the whole token (0, 2)
    t = token_mask(pix, 4)
    assert t.shape == (1, 2, 3) and t[0].nonzero().tolist() == [[0, 2], [1, 0]]
    with pytest.raises(ValueError):
        token_mask(torch.zeros(6, 8), 4)


@pytest.mark.parametrize("grid", [(4, 4), (6, 7)])
def test_completion_keeps_unmasked_tokens(grid):
    m = tiny_net(MODES["class"])
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 32, (2, *grid), generator=g)
    mask = torch.rand(grid, generator=g) < 0.4
    c = torch.tensor([[1], [6]])
    out = complete_tokens(m.transformer, c, tokens, mask, (4, 4), P.SamplingSettings(),
                          torch.Generator().manual_seed(1), n_vocab=32)
    assert torch.equal(out[:, ~mask], tokens[:, ~mask])
    assert not torch.equal(out[:, mask], tokens[:, mask])  # sampled afresh (at random: differs w.h.p.)


def test_completion_of_a_suffix_is_greedy_continuation():
    """Masking everything from token k on equals plain greedy sampling continued from the kept prefix."""
    m = tiny_net(MODES["class"])
    c = torch.tensor([[4]])
    tokens = torch.randint(0, 32, (1, 4, 4), generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask.view(-1)[6:] = True
    out = complete_tokens(m.transformer, c, tokens, mask, (4, 4), P.SamplingSettings(greedy=True), n_vocab=32,
                          decoding=EXACT)
    ref = tokens.view(1, -1)[:, :6]
    with torch.inference_mode():
        for _ in range(10):
            nxt = m.transformer(torch.cat((c, ref), 1))[:, -1, :32].argmax(-1, keepdim=True)
            ref = torch.cat((ref, nxt), 1)
    assert torch.equal(out.view(1, -1), ref)


def test_a_model_loaded_under_inference_mode_samples_on_every_path(tmp_path):
    """`with torch.inference_mode(): m = vqforge.load(...)` gives inference-tensor parameters; every decode path
    (the packed bf16 one keys its cache on parameter versions, which such tensors lack) still samples."""
    import vqforge
    from vqforge.api import save_model
    from vqforge.sampling.generate import DecodeOptions, sample_tokens
    from vqforge.sampling.processors import SamplingSettings

    save_model(tiny_net(ClassConfig(n_classes=3)), tmp_path / "m")
    with torch.inference_mode():
        gpt = vqforge.load(tmp_path / "m").transformer
        cond = torch.zeros(2, 1, dtype=torch.long)
        for precision in ("auto", "fp32"):
            out = sample_tokens(gpt, cond, 5, SamplingSettings(top_k=10), torch.Generator().manual_seed(0),
                                decoding=DecodeOptions(precision=precision))
            assert out.shape == (2, 5) and int(out.max()) < gpt.config.vocab_size
