"""Numerical parity of the discriminator and the VQGAN loss step with the original (reference vectors)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vqforge.losses import NLayerDiscriminator, VQGANLoss, VQGANLossConfig, strip_prefix
from vqforge.models.vqgan import AutoencoderConfig, VQGAN, VQGANConfig
from vqforge.quantizers import VQConfig

FIXTURES = Path(__file__).parent / "fixtures"


def _load(name: str) -> dict:
    return torch.load(FIXTURES / name, map_location="cpu", weights_only=True)


def test_discriminator_parity_eval():
    ref = _load("discriminator.pt")
    disc = NLayerDiscriminator(**ref["config"])
    disc.load_state_dict(strip_prefix(ref["state_dict"], "loss.discriminator."))
    disc.eval()
    with torch.no_grad():
        logits = disc(ref["inputs"]["x"])
    assert logits.shape == ref["outputs"]["logits"].shape
    torch.testing.assert_close(logits, ref["outputs"]["logits"], atol=1e-4, rtol=1e-4)


def _vqgan_from_reference(ref: dict) -> VQGAN:
    c = dict(ref["config"])
    dd = dict(c["ddconfig"])
    dd["ch_mult"] = tuple(dd["ch_mult"])
    dd["attn_resolutions"] = tuple(dd["attn_resolutions"])
    cfg = VQGANConfig(AutoencoderConfig(**dd), VQConfig(n_embed=c["n_embed"],
                                                               embed_dim=c["embed_dim"], beta=c["beta"],
                                                               legacy=c["legacy"]))
    model = VQGAN(cfg)
    model.load_state_dict({k: v for k, v in ref["state_dict"].items() if not k.startswith("loss.")})
    return model


def test_vqgan_loss_step_parity():
    ref = _load("vqgan_loss_step.pt")
    lc = ref["loss_config"]
    loss_cfg = VQGANLossConfig(perceptual="none", **lc)
    assert loss_cfg.perceptual_weight == 0.0
    model = _vqgan_from_reference(ref).train()
    loss = VQGANLoss(loss_cfg).train()
    loss.discriminator.load_state_dict(strip_prefix(ref["state_dict"], "loss.discriminator."))
    x = ref["inputs"]["x"]
    step = int(ref["global_step"])

    out = model(x)
    total, g_logs = loss.generator_loss(x, out.reconstruction, out.quantizer.losses["loss"], model.last_layer, step)
    d_total, d_logs = loss.discriminator_loss(x, out.reconstruction.detach(), step)

    logs = {**g_logs, **d_logs}
    for key, want in ref["outputs"].items():
        assert key in logs, key
        torch.testing.assert_close(logs[key].float().reshape(()), want.float().reshape(()), atol=1e-5, rtol=1e-5,
                                   msg=lambda m, key=key: f"{key}: {m}")
    torch.testing.assert_close(total.detach(), ref["outputs"]["total_loss"].reshape(()), atol=1e-5, rtol=1e-5)
    # The total is differentiable w.r.t. the autoencoder, the discriminator loss w.r.t. D only.
    total.backward()
    assert model.last_layer.grad is not None and torch.isfinite(model.last_layer.grad).all()
    assert d_total.requires_grad


@pytest.mark.parametrize("use_actnorm", [False, True])
def test_discriminator_layout_matches_original_keys(use_actnorm):
    disc = NLayerDiscriminator(input_nc=3, ndf=64, n_layers=3, use_actnorm=use_actnorm)
    keys = set(disc.state_dict())
    convs = [0, 2, 5, 8, 11]
    norms = [3, 6, 9]
    for i in convs:
        assert f"main.{i}.weight" in keys
    # BatchNorm variant: the convs followed by a norm have no bias; ActNorm keeps conv biases.
    assert ("main.2.bias" in keys) == use_actnorm
    for i in norms:
        if use_actnorm:
            assert {f"main.{i}.loc", f"main.{i}.scale", f"main.{i}.initialized"} <= keys
        else:
            assert {f"main.{i}.weight", f"main.{i}.running_mean", f"main.{i}.num_batches_tracked"} <= keys
    assert disc.main[11].weight.shape == (1, 512, 4, 4)
