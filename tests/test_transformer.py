"""The Net2NetTransformer pipeline: config checks, every condition mode's tokens, training pieces, and a
synthetic task proving the condition is used (a tiny model learns to copy condition tokens)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import nearest_codes

import vqforge
from vqforge.models.conditioning import (ClassConfig, ConditionConfig, DepthConfig, EdgesConfig, LowresConfig,
                                        SegmentationConfig, TokensConfig, UnconditionalConfig, canny,
                                        colorize_labels, one_hot_labels)
from vqforge.models.gpt import GPTConfig
from vqforge.models.transformer import Net2NetTransformer, TransformerConfig
from vqforge.models.vqgan import AutoencoderConfig, VQGANConfig
from vqforge.quantizers import VQConfig
from vqforge.train.transformer import enable_activation_checkpointing, lr_at, param_groups, sample_tokens


def tiny_vq(in_ch=3, n_embed=32, ch_mult=(1, 2, 2), resolution=16) -> VQGANConfig:
    return VQGANConfig(AutoencoderConfig(ch=32, ch_mult=ch_mult, num_res_blocks=1, attn_resolutions=(),
                                         in_channels=in_ch, out_ch=in_ch, resolution=resolution, z_channels=8),
                       VQConfig(n_embed=n_embed, embed_dim=8))


def tiny(cond: ConditionConfig, vocab=64, block=80, pkeep=1.0, n_embd=32, n_layer=1) -> Net2NetTransformer:
    gpt = GPTConfig(vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=2, n_embd=n_embd)
    return Net2NetTransformer(TransformerConfig(gpt=gpt, first_stage=tiny_vq(), cond=cond, pkeep=pkeep))


def test_config_checks_are_clear():
    with pytest.raises(ValueError, match=r"model\.gpt\.vocab_size=10 is too small.*10 classes \+ 1 NULL class.*"
                                         r"set model\.gpt\.vocab_size=32 "):
        tiny(ClassConfig(n_classes=10), vocab=10)
    with pytest.raises(ValueError, match=r"model\.gpt\.vocab_size=41 "):
        tiny(ClassConfig(n_classes=40), vocab=40)
    with pytest.raises(ValueError, match="needs a condition-stage VQGAN"):
        tiny(DepthConfig())
    with pytest.raises(ValueError, match="takes 3 input channels, expected 1"):
        tiny(DepthConfig(cond_stage=tiny_vq(3)))
    with pytest.raises(ValueError, match=r"model\.cond\.dropout=0\.1 needs a null condition.*null_condition=true"):
        tiny(DepthConfig(cond_stage=tiny_vq(1), dropout=0.1))
    with pytest.raises(ValueError, match=r"model\.cond\.dropout=0\.1 needs.*null_class=true"):
        tiny(ClassConfig(n_classes=3, null_class=False, dropout=0.1))


def test_class_tokens_null_class_and_forward_layout():
    m = tiny(ClassConfig(n_classes=10, dropout=0.5), pkeep=0.5)
    assert m.null_token == 10 and m.n_image_codes == 32
    assert m.encode_to_c(torch.tensor([3, -1, 9])).tolist() == [[3], [10], [9]]
    with pytest.raises(ValueError, match="must lie in"):
        m.encode_to_c(torch.tensor([10]))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    m.eval()
    logits, target = m(x, torch.tensor([1, 2]))
    assert logits.shape == (2, 16, 64) and torch.equal(target, m.encode_to_z(x))
    # the layout: logits for image position i come from the sequence [c, z_<i]
    z = target
    full = m.transformer(torch.cat([torch.tensor([[1], [2]]), z], 1))
    torch.testing.assert_close(logits, full[:, :-1])
    # frozen stages stay in eval mode and get no gradients
    m.train()
    assert not m.first_stage.training and m.transformer.training
    assert not any(p.requires_grad for p in m.first_stage.parameters())
    # training noise: pkeep replaces inputs with image codes, label dropout uses the NULL class
    torch.manual_seed(0)
    c = torch.full((512, 1), 4)
    seen = {}

    def spy(idx):
        seen["idx"] = idx
        return torch.zeros(*idx.shape, 64)

    m.transformer.forward = spy
    m.forward_tokens(torch.zeros(512, 16, dtype=torch.long), c)
    idx = seen["idx"]
    assert 0.4 < (idx[:, 0] == 10).float().mean() < 0.6  # label dropout
    assert 0.4 < (idx[:, 1:] != 0).float().mean() < 0.55  # ~half replaced (a few redraw code 0)
    assert idx[:, 1:].max() < 32


def test_spatial_modes_tokens_and_grids():
    seg = tiny(SegmentationConfig(n_labels=5, cond_stage=tiny_vq(5, ch_mult=(1, 2))))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    c = seg.build_condition(x, torch.randint(0, 5, (2, 16, 16)))
    assert c.shape == (2, 5, 16, 16) and torch.equal(c.sum(1), torch.ones(2, 16, 16))
    assert seg.encode_to_c(c).shape == (2, 64) and seg.cond_hw((16, 16)) == (8, 8)
    assert seg(x, c)[0].shape == (2, 16, 64)
    low = tiny(LowresConfig(lowres_factor=2, cond_stage=tiny_vq(3, ch_mult=(1, 2))))
    c = low.build_condition(x)
    assert c.shape == (2, 3, 8, 8) and low.cond_hw((16, 16)) == (4, 4) and low.encode_to_c(c).shape == (2, 16)
    edges = tiny(EdgesConfig(cond_stage=tiny_vq(1)))
    c = edges.build_condition(x)
    assert c.shape == (2, 1, 16, 16) and set(c.unique().tolist()) <= {-1.0, 1.0}
    depth = tiny(DepthConfig(cond_stage=tiny_vq(1)))
    raw = torch.rand(2, 16, 16) * 50 + 3
    c = depth.build_condition(x, raw)
    lo, hi = raw.amin((1, 2), keepdim=True), raw.amax((1, 2), keepdim=True)
    torch.testing.assert_close(c, ((raw - lo) / (hi - lo) * 2 - 1)[:, None])  # per-image min/max to [-1, 1]
    tokens = depth.encode_to_c(c)
    assert tokens.shape == (2, 16) and torch.equal(tokens, nearest_codes(depth.cond_stage, c))  # f4: 4x4
    assert depth.decode_cond(tokens, depth.cond_hw((16, 16))).shape == (2, 1, 16, 16)
    unc = tiny(UnconditionalConfig(sos_token=7))
    assert unc.encode_to_c(x).tolist() == [[7], [7]] and unc.cond_hw((16, 16)) is None


def test_canny_finds_the_outline_of_a_square():
    img = -torch.ones(1, 3, 32, 32)
    img[..., 8:24, 8:24] = 1.0
    e = canny(img)[0, 0]
    ring = torch.zeros(32, 32, dtype=torch.bool)
    ring[6:26, 6:26] = True
    ring[10:22, 10:22] = False
    assert e.sum() >= 50  # about the 4 x 16 outline pixels
    assert e[~ring].sum() == 0  # nothing far from the outline, nothing inside or in the flat background
    # each side of the square is a thin line: one edge pixel per row crossing the left side
    assert (e[10:22, 4:12].sum(1) == 1).all()


def test_one_hot_and_colorize():
    lab = torch.tensor([[[0, 1], [2, 2]]])
    oh = one_hot_labels(lab, 3)
    assert oh.shape == (1, 3, 2, 2) and torch.equal(oh.argmax(1), lab)
    rgb = colorize_labels(oh, 3)
    assert rgb.shape == (1, 3, 2, 2) and torch.equal(rgb[..., 1, 0], rgb[..., 1, 1])
    with pytest.raises(ValueError, match="label ids must lie"):
        one_hot_labels(torch.tensor([[[3]]]), 3)


def test_param_groups_and_schedule():
    m = tiny(UnconditionalConfig())
    decay, no_decay = param_groups(m.transformer, 0.01)
    names = {id(p): n for n, p in m.transformer.named_parameters()}
    dn = {names[id(p)] for p in decay["params"]}
    nn_ = {names[id(p)] for p in no_decay["params"]}
    assert "head.weight" in dn and "blocks.0.attn.key.weight" in dn and "blocks.0.mlp.0.weight" in dn
    assert {"pos_emb", "tok_emb.weight", "ln_f.weight", "blocks.0.attn.key.bias"} <= nn_
    assert not dn & nn_
    assert lr_at(0, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_at(100, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(55, 1.0, 10, 100, 0.1) == pytest.approx(0.55)


def test_model_dir_roundtrip(tmp_path):
    m = tiny(ClassConfig(n_classes=10, dropout=0.1))
    vqforge.save_model(m, tmp_path / "m")
    again = vqforge.load(tmp_path / "m")
    assert isinstance(again, Net2NetTransformer) and again.config == m.config
    for k, v in m.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


pytestmark = pytest.mark.usefixtures("one_thread")


def test_condition_is_used_copy_task():
    """A tiny GPT learns to copy 6 condition tokens into the 6 image tokens; at test time, for conditions
    it never saw, greedy decoding reproduces them (chance would be 1/16 per token)."""
    torch.manual_seed(0)
    gpt = GPTConfig(vocab_size=16, block_size=12, n_layer=2, n_head=4, n_embd=64)
    cfg = TransformerConfig(gpt=gpt, first_stage=tiny_vq(n_embed=16), cond=TokensConfig())
    m = Net2NetTransformer(cfg)
    opt = torch.optim.AdamW(param_groups(m.transformer, 0.0), lr=3e-3, betas=(0.9, 0.95))
    m.train()
    for step in range(200):
        c = torch.randint(0, 16, (32, 6))
        logits, target = m.forward_tokens(c.clone(), c)
        loss = m.loss(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    c = torch.randint(0, 16, (256, 6))
    out = sample_tokens(m, m.encode_to_c(c), 6, greedy=True)
    acc = (out == c).float().mean().item()
    print(f"copy accuracy {acc:.3f} (chance {1 / 16:.3f}), final train loss {loss.item():.3f} nats "
          f"(uniform {math.log(16):.2f})")
    assert acc > 0.95


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    a = tiny(ClassConfig(n_classes=10), n_layer=2)
    b = tiny(ClassConfig(n_classes=10), n_layer=2)
    b.load_state_dict(a.state_dict())
    enable_activation_checkpointing(b.transformer)
    z, c = torch.randint(0, 32, (4, 16)), torch.randint(0, 10, (4, 1))
    for m in (a, b):
        m.train()
        m.loss(*m.forward_tokens(z, c)).backward()
    for (n, p), q in zip(a.transformer.named_parameters(), b.transformer.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)
    saved = {}
    for name, m in (("plain", a), ("checkpointed", b)):  # tensors kept for the backward pass (Block.checkpoint)
        count = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, count=count: count.append(1) or t, lambda t: t):
            m.loss(*m.forward_tokens(z, c))
        saved[name] = len(count)
    assert saved["checkpointed"] < saved["plain"] / 2, saved
    # the KV-cache path still works on a checkpointed model
    b.eval()
    assert sample_tokens(b, c, 16, greedy=True).shape == (4, 16)


def test_paper_and_tiny_configs_load():
    from pathlib import Path

    from vqforge.train.condition import load_config as load_segmentation_config
    from vqforge.train.transformer import load_config

    root = Path(__file__).resolve().parents[1] / "configs"
    cin = load_config(root / "transformer_imagenet_class.yaml").model
    g = cin.gpt
    assert (g.n_layer, g.n_head, g.n_embd, g.vocab_size, g.block_size) == (48, 24, 1536, 16384, 257)
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        from vqforge.models.gpt import GPT

        n_params = sum(p.numel() for p in GPT(g).parameters())
    assert 1.35e9 < n_params < 1.45e9  # the paper's 1.4B
    assert cin.cond.mode == "class" and cin.cond.n_classes == 1000 and cin.cond.null_class
    faces = load_config(root / "transformer_faceshq.yaml").model.gpt
    assert (faces.n_layer, faces.n_embd) == (24, 1024)
    assert load_config(root / "transformer_sflckr.yaml").model.cond.n_labels == 182
    assert load_config(root / "transformer_drin.yaml").model.cond.mode == "depth"
    for name in ("uncond", "class", "seg"):
        assert load_config(root / f"transformer_tiny_{name}.yaml").model.gpt.n_layer <= 4
    assert load_segmentation_config(root / "seg_sflckr.yaml").model.ddconfig.in_channels == 182
