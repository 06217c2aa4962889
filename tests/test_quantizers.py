"""Quantizer suite: gradients, index round trips, EMA arithmetic, restarts, FSQ, configs, usage."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from vqforge.config import ConfigError, dump_yaml, from_dict, load_yaml
from vqforge.models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
from vqforge.quantizers import (CodebookUsage, EMAVectorQuantizer, EMAVQConfig, FSQConfig, FSQuantizer, GumbelConfig,
                                L2VectorQuantizer, L2VQConfig, QuantizerConfig, VectorQuantizer, VQConfig,
                                build_quantizer, validation_usage)
from vqforge.quantizers.entropy import entropy_penalty

FIXTURES = Path(__file__).parent / "fixtures"

#: one config per kind / option combination under test (tiny sizes)
KINDS = {
    "vq": VQConfig(n_embed=32, embed_dim=8),
    "vq_legacy": VQConfig(n_embed=32, embed_dim=8, legacy=True),
    "gumbel": GumbelConfig(n_embed=32, embed_dim=8),
    "ema": EMAVQConfig(n_embed=32, embed_dim=8),
    "l2": L2VQConfig(n_embed=32, embed_dim=8, codebook_dim=4),
    "l2_restart_kmeans": L2VQConfig(n_embed=16, embed_dim=8, codebook_dim=4, restart_after=1, kmeans_init=True),
    "vq_entropy": VQConfig(n_embed=32, embed_dim=8, entropy_weight=0.1),
    "ema_entropy_restart": EMAVQConfig(n_embed=16, embed_dim=8, entropy_weight=0.1, restart_after=1,
                                       kmeans_init=True),
    "fsq": FSQConfig(n_embed=60, embed_dim=8, levels=(5, 4, 3)),
    "fsq_entropy": FSQConfig(n_embed=60, embed_dim=8, levels=(5, 4, 3), entropy_weight=0.1,
                             entropy_temperature=1.0),
    "fsq_data_init": FSQConfig(n_embed=60, embed_dim=8, levels=(5, 4, 3), data_init=True),
}


def tiny_vqgan(q: QuantizerConfig) -> VQGAN:
    dd = AutoencoderConfig(ch=32, ch_mult=(1, 1), num_res_blocks=1, attn_resolutions=(), resolution=16, z_channels=8)
    torch.manual_seed(0)
    return VQGAN(VQGANConfig(dd, q))


@pytest.mark.parametrize("name", list(KINDS))
def test_straight_through_gradient_reaches_encoder_input(name):
    model = tiny_vqgan(KINDS[name]).train()
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    out = model(x)
    (out.reconstruction.square().mean() + out.quantizer.losses["loss"]).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    enc_grad = model.encoder.conv_in.weight.grad
    assert enc_grad is not None and enc_grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(KINDS))
def test_decode_indices_matches_decoding_quantized_latents(name):
    model = tiny_vqgan(KINDS[name])
    model.train()
    model(torch.randn(2, 3, 16, 16))  # one training-mode pass (k-means init, EMA, restart bookkeeping)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        q = model.encode(x)
        idx = model.encode_to_indices(x)
        assert idx.shape == (2, 8, 8) and idx.dtype == torch.long
        assert idx.min() >= 0 and idx.max() < model.n_codes
        torch.testing.assert_close(idx, q.indices)
        latents = q.quantized.contiguous(memory_format=torch.channels_last)  # decode_indices' layout on a CPU
        torch.testing.assert_close(model.decode_indices(idx), model.decode(latents), atol=1e-5, rtol=1e-5)


def test_eval_and_no_grad_passes_do_not_change_state():
    model = tiny_vqgan(KINDS["l2_restart_kmeans"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    model(torch.randn(2, 3, 16, 16))
    model.train()
    model.encode_to_indices(torch.randn(2, 3, 16, 16))  # no_grad
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_ema_update_matches_hand_computation():
    q = EMAVectorQuantizer(2, 2, beta=0.25, decay=0.5, eps=0.1).train()
    q.embedding.weight.data = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    q.embed_sum.copy_(q.embedding.weight)
    q.cluster_size.fill_(1.0)
    # three latents: (1, 1) and (3, 1) go to code 0, (9, 9) to code 1
    z = torch.tensor([[1.0, 1.0], [3.0, 1.0], [9.0, 9.0]]).t().reshape(1, 2, 1, 3)
    out = q(z)
    assert out.indices.flatten().tolist() == [0, 0, 1]
    # loss = beta * commitment against the codes before the update: (2 + 10 + 2) / 6
    assert out.losses["loss"].item() == pytest.approx(0.25 * 14 / 6)
    assert set(out.losses) == {"loss", "commitment"}
    # cluster_size = 0.5 * 1 + 0.5 * (2, 1); embed_sum = 0.5 * codes + 0.5 * ((4, 2), (9, 9))
    torch.testing.assert_close(q.cluster_size, torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(q.embed_sum, torch.tensor([[2.0, 1.0], [9.5, 9.5]]))
    # Laplace: n = 2.5, smoothed = (cs + 0.1) / (2.5 + 2 * 0.1) * 2.5 = (1.48148..., 1.01851...)
    torch.testing.assert_close(q.embedding.weight, torch.tensor([[1.35, 0.675], [9.327273, 9.327273]]))
    assert not q.embedding.weight.requires_grad
    keys = set(q.state_dict())
    assert keys == {"embedding.weight", "cluster_size", "embed_sum"}


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer, L2VectorQuantizer])
def test_restart_revives_dead_codes(cls):
    torch.manual_seed(0)
    kwargs = {"codebook_dim": 4} if cls is L2VectorQuantizer else {}  # l2 without projection
    q = cls(16, 4, restart_after=2, **kwargs).train()
    # every code but 0 sits far away: all latents collapse onto code 0
    with torch.no_grad():
        q.embedding.weight.fill_(-100.0)
        q.embedding.weight[0] = 100.0
        if isinstance(q, EMAVectorQuantizer):
            q.embed_sum.copy_(q.embedding.weight)
    z = torch.rand(4, 4, 4, 4) + 1.0  # positive latents: nearest to code 0 in every geometry
    for _ in range(2):
        assert q(z).indices.unique().tolist() == [0]
    assert (q.code_age[1:] == 2).all() and q.code_age[0] == 0
    out = q(z)  # ages reached restart_after: codes 1..15 are re-seeded from this batch before the lookup
    assert set(range(1, 16)) <= set(out.indices.unique().tolist())  # all revived codes win latents
    assert (q.code_age[1:] == 0).all()
    if cls is EMAVectorQuantizer:
        return  # the EMA update has already moved the revived codes towards their cluster means
    # revived codes are latents of the batch (in lookup space)
    lookup = q.to_lookup(z).permute(0, 2, 3, 1).reshape(-1, 4)
    for k in range(1, 16):
        assert torch.isclose(q.codebook()[k], lookup, atol=1e-5).all(dim=1).any()


def test_kmeans_init_runs_once_and_is_recorded():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 2, kmeans_init=True).train()
    centres = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]])
    pts = centres.repeat_interleave(16, 0) + 0.01 * torch.randn(64, 2)
    z = pts.t().reshape(1, 2, 8, 8)
    q(z)
    assert bool(q.kmeans_done)
    # every code is near one of the true centres, and each centre has a code
    d = torch.cdist(q.embedding.weight.detach(), centres)
    assert d.min(dim=1).values.max() < 0.1 and d.min(dim=0).values.max() < 0.1
    # a resumed run (state loaded with kmeans_done=True) keeps its codes
    q2 = VectorQuantizer(8, 2, kmeans_init=True).train()
    q2.load_state_dict(q.state_dict())
    with torch.no_grad():
        q2.embedding.weight.zero_()
    q2(z)
    assert q2.embedding.weight.abs().max() == 0  # vq codebook changes only by gradient, none applied


def test_kmeans_init_gathers_latents_over_batches():
    torch.manual_seed(0)
    q = VectorQuantizer(64, 2, kmeans_init=True).train()
    w0 = q.embedding.weight.detach().clone()
    for _ in range(3):  # 3 x 32 latents < 2 * 64: still gathering, codebook untouched
        q(torch.randn(2, 2, 4, 4))
        assert not bool(q.kmeans_done) and torch.equal(q.embedding.weight, w0)
    q(torch.randn(2, 2, 4, 4))  # 128 latents: k-means runs
    assert bool(q.kmeans_done) and not torch.equal(q.embedding.weight, w0)


def test_fsq_indices_round_trip():
    q = FSQuantizer((8, 5, 5, 5), embed_dim=4)
    assert q.n_codes == 1000
    ids = torch.arange(1000)
    codes = q.indices_to_codes(ids)  # (1000, 4)
    assert codes.abs().max() <= 1.0 and len(torch.unique(codes, dim=0)) == 1000
    torch.testing.assert_close(q.codes_to_indices(codes), ids)
    # forward indices <-> embed_indices on random latents, both with even and odd levels
    q.eval()
    z = 3 * torch.randn(2, 4, 6, 6)
    out = q(z)
    torch.testing.assert_close(q.embed_indices(out.indices), out.quantized)
    assert out.losses["loss"].item() == 0.0
    # large latents saturate at the extreme grid points, not beyond
    assert q(1e3 * torch.ones(1, 4, 1, 1)).indices.item() == 999
    assert q(-1e3 * torch.ones(1, 4, 1, 1)).indices.item() == 0


@pytest.mark.parametrize("name", list(KINDS))
def test_config_yaml_round_trip(name, tmp_path):
    cfg = VQGANConfig(quantizer=KINDS[name])
    text = dump_yaml(cfg)
    (tmp_path / "c.yaml").write_text(text)
    assert load_yaml(VQGANConfig, tmp_path / "c.yaml") == cfg
    assert from_dict(QuantizerConfig, yaml.safe_load(dump_yaml(KINDS[name]))) == KINDS[name]


def test_original_style_config_and_keys_still_load():
    cfg = from_dict(QuantizerConfig, {"n_embed": 64, "embed_dim": 16, "beta": 0.25, "legacy": True})
    assert cfg.kind == "vq" and cfg.restart_after == 0 and not cfg.kmeans_init
    assert set(build_quantizer(cfg, 16).state_dict()) == {"embedding.weight"}
    g = build_quantizer(GumbelConfig(n_embed=8, embed_dim=4), 4)
    assert set(g.state_dict()) == {"proj.weight", "proj.bias", "embed.weight"}


@pytest.mark.parametrize("name", ["vqgan_f4_legacy", "vqgan_f8_seg"])
def test_vq_parity_with_original_reference_vectors(name):
    ref = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    c = dict(ref["config"])
    dd = from_dict(AutoencoderConfig, c.pop("ddconfig"))
    model = VQGAN(VQGANConfig(dd, from_dict(QuantizerConfig, c))).eval()
    model.load_state_dict(ref["state_dict"])
    with torch.no_grad():
        q = model.encode(ref["inputs"]["x"])
    torch.testing.assert_close(q.indices, ref["outputs"]["indices"])
    torch.testing.assert_close(q.quantized, ref["outputs"]["quant"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(q.losses["loss"], ref["outputs"]["emb_loss"], atol=1e-5, rtol=1e-5)


def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match="n_embed: is 1024, but levels .* give 1000 codes; set it to 1000"):
        FSQConfig(n_embed=1024, levels=(8, 5, 5, 5))
    with pytest.raises(ConfigError, match="quantizer.restart_after: unknown key for kind 'fsq' .*kind vq, ema, l2"):
        from_dict(VQGANConfig, {"quantizer": {"kind": "fsq", "restart_after": 5}})
    with pytest.raises(ConfigError, match="kind: 'lfq' is not one of vq, gumbel, ema, l2, fsq"):
        from_dict(QuantizerConfig, {"kind": "lfq"})


def test_entropy_penalty_values():
    # two latents, each certain of a different code out of two: sample entropy 0, codebook entropy log 2
    d = torch.tensor([[0.0, 10.0], [10.0, 0.0]])
    e = entropy_penalty(d, temperature=0.01)
    assert e["sample_entropy"].item() == pytest.approx(0.0, abs=1e-6)
    assert e["codebook_entropy"].item() == pytest.approx(math.log(2))
    # both on the same code: codebook entropy 0, so the penalty is higher
    assert entropy_penalty(torch.tensor([[0.0, 10.0], [0.0, 10.0]]))["penalty"] > e["penalty"]


def test_usage_meter_window_and_perplexity():
    m = CodebookUsage(4, window=2)
    m.update(torch.tensor([0, 0]))
    m.update(torch.tensor([1, 1]))
    assert m.usage() == 0.5 and m.perplexity() == pytest.approx(2.0)
    m.update(torch.tensor([2, 3]))  # the first step leaves the window
    assert m.codes_used() == 3 and m.counts.tolist() == [0, 2, 1, 1]
    full = CodebookUsage(4)
    full.update(torch.arange(4).repeat(3))
    assert full.summary("val/") == {"val/usage": 1.0, "val/perplexity": pytest.approx(4.0), "val/codes_used": 4.0}
    model = tiny_vqgan(KINDS["fsq"]).train()
    stats = validation_usage(model, [torch.randn(2, 3, 16, 16)])
    assert model.training and 0 < stats["usage"] <= 1 and stats["perplexity"] >= 1


def test_fsq_data_init_standardises_projected_latents_once():
    torch.manual_seed(0)
    q = FSQuantizer((8, 5, 5, 5), embed_dim=16, data_init=True).train()
    z = 0.05 * torch.randn(4, 16, 8, 8) + 0.3
    q(z)
    assert bool(q.data_init_done)
    with torch.no_grad():
        y = q.proj_in(z)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    w = q.proj_in.weight.clone()
    q(3 * z)  # done once: a second batch (or a resumed run) does not rescale again
    assert torch.equal(q.proj_in.weight, w)
    with pytest.raises(ConfigError, match="data_init: needs a projection"):
        FSQConfig(n_embed=1000, embed_dim=4, data_init=True)
