"""Behaviour of VQGANLoss, its pure functions, the discriminator's init and ActNorm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vqforge.config import from_dict, to_dict
from vqforge.losses import (ActNorm, NLayerDiscriminator, PerceptualLoss, VQGANLoss, VQGANLossConfig,
                            adaptive_weight, adopt_weight, hinge_d_loss, vanilla_d_loss)

G_KEYS = {"total_loss", "quant_loss", "nll_loss", "rec_loss", "p_loss", "d_weight", "disc_factor", "g_loss"}


class TinyDecoder(nn.Module):
    """A stand-in autoencoder output: xrec = conv(z), so ``conv.weight`` plays the decoder's last layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, z):
        return torch.tanh(self.conv(z))


class ConstPerceptual(PerceptualLoss):
    """Perceptual stand-in: mean squared difference per image, (B, 1, 1, 1)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))  # a frozen weight, to check it stays out of state_dict
        self.freeze()

    def forward(self, x, y):
        return self.w * ((x - y) ** 2).mean(dim=(1, 2, 3), keepdim=True)


def _setup(seed=0, **cfg):
    torch.manual_seed(seed)
    cfg.setdefault("perceptual", "none")
    cfg.setdefault("disc_num_layers", 2)
    cfg.setdefault("disc_ndf", 8)
    loss = VQGANLoss(VQGANLossConfig(**cfg))
    dec = TinyDecoder()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = torch.randn(2, 4, 32, 32)
    return loss, dec, x, z


def test_pure_gan_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # hinge: 0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake))) = 0.5 * (0.25 + 0.5)
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.375)
    sp = torch.nn.functional.softplus
    want = 0.5 * (sp(-real).mean() + sp(fake).mean())
    assert vanilla_d_loss(real, fake).item() == pytest.approx(want.item())
    assert adopt_weight(1.0, 4, threshold=5) == 0.0 and adopt_weight(1.0, 5, threshold=5) == 1.0


def test_adaptive_weight_matches_manual_gradients_and_clamps():
    w = torch.randn(3, 3, requires_grad=True)
    a = (w * 2).sum()  # grad 2 everywhere, norm 6
    b = (w * 0.5).sum()  # grad 0.5, norm 1.5
    lam = adaptive_weight(a, b, w, disc_weight=0.8)
    assert lam.item() == pytest.approx(6 / (1.5 + 1e-4) * 0.8, rel=1e-6)
    assert not lam.requires_grad
    a.backward()  # graph retained by adaptive_weight
    tiny = (w * 1e-12).sum()
    assert adaptive_weight((w * 100).sum(), tiny, w).item() == pytest.approx(1e4)


def test_generator_loss_terms_and_gradients():
    loss, dec, x, z = _setup(disc_weight=0.5, codebook_weight=2.0)
    xrec = dec(z)
    q = torch.tensor(0.3, requires_grad=True)
    total, logs = loss.generator_loss(x, xrec, q, dec.conv.weight, step=0)
    assert set(logs) == G_KEYS
    assert all(v.dim() == 0 and not v.requires_grad for v in logs.values())
    nll = (x - xrec).abs().mean()
    assert logs["nll_loss"].item() == pytest.approx(nll.item(), rel=1e-6)
    assert logs["rec_loss"].item() == pytest.approx(nll.item(), rel=1e-6)
    g = -loss.discriminator(xrec).mean()
    assert logs["g_loss"].item() == pytest.approx(g.item(), rel=1e-5)
    lam = adaptive_weight(nll, g, dec.conv.weight, 0.5)
    assert logs["d_weight"].item() == pytest.approx(lam.item(), rel=1e-5)
    expect = nll + lam * 1.0 * g + 2.0 * q
    assert total.item() == pytest.approx(expect.item(), rel=1e-5)
    total.backward()
    assert dec.conv.weight.grad is not None and q.grad.item() == pytest.approx(2.0)


def test_disc_start_gates_gan_terms():
    loss, dec, x, z = _setup(disc_start=10)
    xrec = dec(z)
    total, logs = loss.generator_loss(x, xrec, torch.tensor(0.1), dec.conv.weight, step=9)
    assert logs["disc_factor"].item() == 0.0 and logs["d_weight"].item() == 0.0
    assert total.item() == pytest.approx((logs["nll_loss"] + 0.1).item(), rel=1e-6)
    assert logs["g_loss"].item() != 0.0  # still logged, as the original does
    total.backward()  # the zero-weighted GAN term is kept out of the graph
    assert dec.conv.weight.grad is not None and loss.discriminator.main[0].weight.grad is None
    d_loss, d_logs = loss.discriminator_loss(x, xrec.detach(), step=9)
    assert d_loss.item() == 0.0 and set(d_logs) == {"disc_loss", "logits_real", "logits_fake"}
    _, logs = loss.generator_loss(x, dec(z), torch.tensor(0.1), dec.conv.weight, step=10)
    assert logs["disc_factor"].item() == 1.0 and logs["d_weight"].item() > 0


def test_generator_loss_without_gradients_uses_zero_weight():
    loss, dec, x, z = _setup()
    loss.eval()
    with torch.no_grad():
        total, logs = loss.generator_loss(x, dec(z), torch.tensor(0.0), dec.conv.weight, step=0)
    assert logs["d_weight"].item() == 0.0
    assert total.item() == pytest.approx(logs["nll_loss"].item(), rel=1e-6)
    # A last layer the graph does not reach (e.g. validation on a detached reconstruction) also gives 0.
    _, logs = loss.generator_loss(x, dec(z).detach(), torch.tensor(0.0), dec.conv.weight, step=0)
    assert logs["d_weight"].item() == 0.0


def test_discriminator_loss_hinge_and_vanilla_reuse_detached_reconstruction():
    for kind, fn in (("hinge", hinge_d_loss), ("vanilla", vanilla_d_loss)):
        loss, dec, x, z = _setup(disc_loss=kind, disc_factor=0.5)
        xrec = dec(z)
        d_loss, logs = loss.discriminator_loss(x, xrec, step=0)  # detaches internally
        d_loss.backward()
        assert dec.conv.weight.grad is None  # no gradient into the autoencoder
        assert loss.discriminator.main[0].weight.grad is not None
        with torch.no_grad():  # train mode: BatchNorm uses batch statistics, so a second pass gives the same logits
            real, fake = loss.discriminator(x), loss.discriminator(xrec)
        assert logs["disc_loss"].item() == pytest.approx(0.5 * fn(real, fake).item(), rel=1e-5)
        assert logs["logits_real"].item() == pytest.approx(real.mean().item(), rel=1e-5)


def test_l2_pixel_loss_and_perceptual_term():
    loss, dec, x, z = _setup(pixel_loss="l2", perceptual_weight=0.7)
    assert loss.perceptual is None  # perceptual="none"
    loss = VQGANLoss(loss.config, perceptual=ConstPerceptual())
    xrec = dec(z)
    _, logs = loss.generator_loss(x, xrec, torch.tensor(0.0), dec.conv.weight, step=0)
    p = ((x - xrec) ** 2).mean()
    assert logs["p_loss"].item() == pytest.approx(p.item(), rel=1e-5)
    assert logs["nll_loss"].item() == pytest.approx((p + 0.7 * p).item(), rel=1e-5)
    # Frozen perceptual weights stay out of the state dict and the parameters, but move with .to().
    assert all(k.startswith("discriminator.") for k in loss.state_dict())
    assert all(p.requires_grad for p in loss.parameters())
    loss.to(torch.float64)
    assert loss.perceptual.w.dtype == torch.float64 and loss.discriminator.main[0].weight.dtype == torch.float64
    loss.train()
    assert not loss.perceptual.training


def test_zero_perceptual_weight_builds_nothing_even_for_lpips():
    cfg = VQGANLossConfig(perceptual="lpips-vgg16", perceptual_weight=0.0, disc_ndf=8, disc_num_layers=1)
    assert VQGANLoss(cfg).perceptual is None  # no weights needed


def test_conditional_discriminator():
    loss, dec, x, z = _setup(disc_conditional=True, disc_in_channels=4)
    cond = torch.randn(2, 1, 32, 32)
    xrec = dec(z)
    _, logs = loss.generator_loss(x, xrec, torch.tensor(0.0), dec.conv.weight, step=0, cond=cond)
    assert torch.isfinite(logs["total_loss"])
    d_loss, _ = loss.discriminator_loss(x, xrec, step=0, cond=cond)
    # the discriminator judges image and condition together: hinge loss on D([x, cond]) and D([xrec, cond])
    real, fake = loss.discriminator(torch.cat([x, cond], 1)), loss.discriminator(torch.cat([xrec.detach(), cond], 1))
    hinge = 0.5 * (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean())
    torch.testing.assert_close(d_loss, loss.config.disc_factor * hinge)
    other, _ = loss.discriminator_loss(x, xrec, step=0, cond=-cond)
    assert not torch.allclose(other, d_loss)  # another condition, another judgement
    with pytest.raises(ValueError, match="cond"):
        loss.discriminator_loss(x, xrec, step=0)


def test_config_round_trip_and_validation():
    cfg = VQGANLossConfig(disc_start=250001, disc_weight=0.8, perceptual="inception")
    assert from_dict(VQGANLossConfig, to_dict(cfg)) == cfg
    assert to_dict(cfg)["perceptual"] == "inception"
    with pytest.raises(ValueError, match="disc_loss"):
        VQGANLoss(VQGANLossConfig(perceptual="none", disc_loss="wgan"))


def test_discriminator_init_statistics():
    torch.manual_seed(0)
    d = NLayerDiscriminator(ndf=64, n_layers=3)
    w = d.main[5].weight  # a big conv: 256 x 128 x 4 x 4
    assert abs(w.mean().item()) < 1e-3 and w.std().item() == pytest.approx(0.02, rel=0.02)
    bn = d.main[6]
    assert bn.weight.std().item() == pytest.approx(0.02, rel=0.3) and bn.weight.mean().item() == pytest.approx(1, abs=0.01)
    assert bn.bias.abs().max() == 0


def test_actnorm_data_dependent_init():
    torch.manual_seed(0)
    an = ActNorm(5)
    x = torch.randn(8, 5, 6, 6) * 3 + 2
    y = an(x)
    assert an.initialized.item() == 1
    flat = y.transpose(0, 1).reshape(5, -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(1), torch.ones(5), atol=1e-4, rtol=0)
    loc = an.loc.detach().clone()
    an(torch.randn(8, 5, 6, 6))  # no re-initialisation
    torch.testing.assert_close(an.loc.detach(), loc)
    torch.testing.assert_close(an.reverse(an(x)), x, atol=1e-5, rtol=1e-5)
    # Eval mode before any training pass: identity init, not data-dependent.
    fresh = ActNorm(5).eval()
    torch.testing.assert_close(fresh(x), x)
    assert fresh.initialized.item() == 0
    d = NLayerDiscriminator(ndf=8, n_layers=2, use_actnorm=True)
    assert d(torch.randn(2, 3, 32, 32)).shape == (2, 1, 6, 6)


def test_bf16_autocast_gives_float32_logs():
    loss, dec, x, z = _setup()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        xrec = dec(z)
        total, logs = loss.generator_loss(x, xrec, torch.tensor(0.1), dec.conv.weight, step=0)
        d_loss, d_logs = loss.discriminator_loss(x, xrec, step=0)
    assert all(v.dtype == torch.float32 and v.dim() == 0 for v in {**logs, **d_logs}.values())
    assert torch.isfinite(total) and logs["d_weight"].item() > 0
    total.backward()
    d_loss.backward()
    assert torch.isfinite(dec.conv.weight.grad).all()
