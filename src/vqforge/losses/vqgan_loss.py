"""The VQGAN training objective (the original ``VQLPIPSWithDiscriminator``), split into two named steps.

Generator step (:meth:`VQGANLoss.generator_loss`)::

    rec   = |x - xrec| (or (x - xrec)^2) + perceptual_weight * P(x, xrec)     per pixel
    nll   = mean(rec)
    g     = -mean(D(xrec))
    lam   = clamp(||grad_L nll|| / (||grad_L g|| + 1e-4), 0, 1e4) * disc_weight   (L = decoder's last layer)
    total = nll + lam * disc_factor(step) * g + codebook_weight * quant_loss

Discriminator step (:meth:`VQGANLoss.discriminator_loss`)::

    disc = disc_factor(step) * gan_loss(D(x), D(xrec.detach()))     (hinge or vanilla)

``disc_factor(step)`` is ``disc_factor`` from ``disc_start`` on and 0 before (the original's ``adopt_weight``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .discriminator import NLayerDiscriminator
from .perceptual import PerceptualLoss, build_perceptual

__all__ = ["VQGANLossConfig", "VQGANLoss", "hinge_d_loss", "vanilla_d_loss", "adopt_weight", "adaptive_weight"]


@dataclass(frozen=True)
class VQGANLossConfig:
    """Settings of the VQGAN loss; names and defaults follow the original ``VQLPIPSWithDiscriminator``.

    disc_start: step from which the GAN terms are on. codebook_weight: weight of the quantizer loss.
    pixelloss_weight: kept for config compatibility; NOTE: the original stores it but never uses it, and
    neither does vqforge (the pixel term always has weight 1). pixel_loss: ``l1`` (original) or ``l2``.
    disc_num_layers, disc_in_channels, disc_ndf, use_actnorm: the PatchGAN's shape and normalisation.
    disc_factor: GAN-term multiplier once on. disc_weight: scale of the adaptive weight.
    perceptual: ``lpips-vgg16`` (original), ``inception`` (offline, biases FID) or ``none``;
    perceptual_weight: its weight (0 also disables it). disc_conditional: the discriminator also sees a
    conditioning image concatenated on channels (``disc_in_channels`` must include it).
    disc_loss: ``hinge`` (original default) or ``vanilla`` (softplus).
    perceptual_vgg_path / perceptual_lpips_path / perceptual_inception_path: explicit weight files
    (``None``: search the torch hub cache / installed packages).
    """

    disc_start: int = 0
    codebook_weight: float = 1.0
    pixelloss_weight: float = 1.0
    pixel_loss: Literal["l1", "l2"] = "l1"
    disc_num_layers: int = 3
    disc_in_channels: int = 3
    disc_factor: float = 1.0
    disc_weight: float = 1.0
    perceptual: Literal["lpips-vgg16", "inception", "none"] = "lpips-vgg16"
    perceptual_weight: float = 1.0
    use_actnorm: bool = False
    disc_conditional: bool = False
    disc_ndf: int = 64
    disc_loss: Literal["hinge", "vanilla"] = "hinge"
    perceptual_vgg_path: str | None = None
    perceptual_lpips_path: str | None = None
    perceptual_inception_path: str | None = None

    @property
    def uses_perceptual(self) -> bool:
        """Whether a perceptual network is built (a backbone is chosen and its weight is positive)."""
        return self.perceptual != "none" and self.perceptual_weight > 0


# --------------------------------------------------------------------------------------------- pure functions
def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss: 0.5 * (mean relu(1 - real) + mean relu(1 + fake))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating (logistic) discriminator loss: 0.5 * (mean softplus(-real) + mean softplus(fake))."""
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


D_LOSSES = {"hinge": hinge_d_loss, "vanilla": vanilla_d_loss}


def adopt_weight(weight: float, step: int, threshold: int = 0, value: float = 0.0) -> float:
    """``value`` before step ``threshold``, ``weight`` from it on (the original's GAN warm-up gate)."""
    return value if step < threshold else weight


def adaptive_weight(nll_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    disc_weight: float = 1.0, eps: float = 1e-4, max_weight: float = 1e4) -> torch.Tensor:
    """lambda = clamp(||d nll / d L|| / (||d g / d L|| + eps), 0, max_weight) * disc_weight, detached.

    The gradients are taken with ``torch.autograd.grad(..., retain_graph=True)``, so the graph stays
    usable for the backward pass of the total loss. Raises ``RuntimeError`` when a loss does not depend on
    ``last_layer`` with gradients (e.g. under ``torch.no_grad``); :meth:`VQGANLoss.generator_loss` handles that.
    """
    nll_grads = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    d_weight = torch.norm(nll_grads) / (torch.norm(g_grads) + eps)
    return torch.clamp(d_weight, 0.0, max_weight).detach() * disc_weight


def _detach_logs(logs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """0-dim float32 detached copies (bf16 under autocast becomes float32), on the tensors' device."""
    return {k: v.detach().reshape(()).float() for k, v in logs.items()}


# --------------------------------------------------------------------------------------------- the module
class VQGANLoss(nn.Module):
    """Reconstruction + perceptual + codebook + adaptive-weight PatchGAN loss of VQGAN.

    Attributes: ``config``, ``discriminator`` (:class:`NLayerDiscriminator`, the only trainable part and
    the only entries of ``state_dict()``, as ``discriminator.main.N.*``) and ``perceptual`` (a frozen
    :class:`~vqforge.losses.perceptual.PerceptualLoss` or ``None``; its weights are not saved, they are
    reloaded from their files; ``.to(device)`` moves it along).
    """

    def __init__(self, config: VQGANLossConfig = VQGANLossConfig(), perceptual: PerceptualLoss | None = None):
        """Build from ``config``; the perceptual network is loaded from its files (see
        :func:`~vqforge.losses.perceptual.build_perceptual`) unless ``perceptual`` is passed in."""
        super().__init__()
        if config.disc_loss not in D_LOSSES:
            raise ValueError(f"unknown disc_loss {config.disc_loss!r}; choose hinge or vanilla")
        if config.pixel_loss not in ("l1", "l2"):
            raise ValueError(f"unknown pixel_loss {config.pixel_loss!r}; choose l1 or l2")
        self.config = config
        self.discriminator = NLayerDiscriminator(input_nc=config.disc_in_channels, ndf=config.disc_ndf,
                                                 n_layers=config.disc_num_layers, use_actnorm=config.use_actnorm)
        if perceptual is None and config.uses_perceptual:
            perceptual = build_perceptual(config.perceptual, vgg_path=config.perceptual_vgg_path,
                                          lpips_path=config.perceptual_lpips_path,
                                          inception_path=config.perceptual_inception_path)
        # Held outside the module tree so that state_dict() / optimisers / DDP never see frozen weights.
        object.__setattr__(self, "_perceptual", perceptual)

    @property
    def perceptual(self) -> PerceptualLoss | None:
        """The frozen perceptual network, or ``None``."""
        return self._perceptual

    def _apply(self, fn, recurse: bool = True):  # moves/casts the hidden perceptual net with the rest
        super()._apply(fn, recurse)
        if self._perceptual is not None:
            self._perceptual._apply(fn)
        return self

    # ----------------------------------------------------------------------------------------- pieces
    def _disc_input(self, img: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            if self.config.disc_conditional:
                raise ValueError("disc_conditional=True needs a conditioning tensor (cond=...)")
            return img.contiguous()
        if not self.config.disc_conditional:
            raise ValueError("cond was given but disc_conditional=False")
        return torch.cat((img.contiguous(), cond), dim=1)  # (B, C_img + C_cond, H, W)

    def disc_factor(self, step: int) -> float:
        """The GAN-term multiplier at ``step`` (0 before ``disc_start``)."""
        return adopt_weight(self.config.disc_factor, step, threshold=self.config.disc_start)

    def reconstruction_loss(self, x: torch.Tensor, xrec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel rec loss (B, C, H, W) including the perceptual term, and p_loss (B, 1, 1, 1) or a zero."""
        x, xrec = x.contiguous(), xrec.contiguous()
        diff = xrec - x
        rec = diff.abs() if self.config.pixel_loss == "l1" else diff * diff  # (B, C, H, W)
        if self._perceptual is not None:
            p_loss = self._perceptual(x, xrec)  # (B, 1, 1, 1)
            rec = rec + self.config.perceptual_weight * p_loss
        else:
            p_loss = torch.zeros((), device=x.device)
        return rec, p_loss

    # ----------------------------------------------------------------------------------------- steps
    def generator_loss(self, x: torch.Tensor, xrec: torch.Tensor, quant_loss: torch.Tensor,
                       last_layer: torch.Tensor | None, step: int, cond: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The autoencoder's loss for one batch.

        x, xrec: images and reconstructions (B, C, H, W) in [-1, 1]; quant_loss: the quantizer's loss
        (``QuantizerOutput.losses["loss"]``); last_layer: the decoder's last weight (``VQGAN.last_layer``)
        for the adaptive weight; step: global step (for ``disc_start``); cond: conditioning image when
        ``disc_conditional``. Returns the total loss and detached logs ``total_loss, quant_loss, nll_loss,
        rec_loss, p_loss, d_weight, disc_factor, g_loss`` (0-dim float32 tensors on x's device).

        The adaptive weight is computed only while the GAN term is on (before ``disc_start`` it would be
        multiplied by 0 anyway; d_weight is logged as 0 then). When gradients are unavailable (``no_grad``,
        eval, or ``last_layer`` None) it is 0, as in the original's evaluation fallback.
        """
        rec, p_loss = self.reconstruction_loss(x, xrec)
        nll_loss = rec.mean()
        disc_factor = self.disc_factor(step)
        # Before disc_start the GAN term has weight 0: g_loss is still computed (logged, and D's BatchNorm
        # statistics move as in the original) but kept out of the graph so backward skips D.
        with torch.set_grad_enabled(torch.is_grad_enabled() and disc_factor > 0):
            logits_fake = self.discriminator(self._disc_input(xrec, cond))  # (B, 1, h, w)
        g_loss = -logits_fake.mean()
        d_weight = torch.zeros((), device=x.device)
        if disc_factor > 0 and last_layer is not None and torch.is_grad_enabled():
            try:
                d_weight = adaptive_weight(nll_loss, g_loss, last_layer, self.config.disc_weight)
            except RuntimeError:
                # NOTE: the original falls back to 0 when the graph does not reach last_layer (validation).
                d_weight = torch.zeros((), device=x.device)
        quant_loss = torch.as_tensor(quant_loss, device=x.device).mean()
        total = nll_loss + d_weight * disc_factor * g_loss + self.config.codebook_weight * quant_loss
        logs = {
            "total_loss": total,
            "quant_loss": quant_loss,
            "nll_loss": nll_loss,
            "rec_loss": rec.mean(),
            "p_loss": p_loss.mean(),
            "d_weight": d_weight,
            "disc_factor": torch.tensor(float(disc_factor), device=x.device),
            "g_loss": g_loss,
        }
        return total, _detach_logs(logs)

    def discriminator_loss(self, x: torch.Tensor, xrec_detached: torch.Tensor, step: int,
                           cond: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The discriminator's loss for one batch: ``disc_factor(step) * gan_loss(D(x), D(xrec))``.

        ``xrec_detached`` is detached again here, so the reconstruction of the generator step can be
        reused. D sees real and fake in two separate passes (BatchNorm statistics per pass, as the
        original). Returns the loss and logs ``disc_loss, logits_real, logits_fake`` (means, detached).
        """
        logits_real = self.discriminator(self._disc_input(x.detach(), cond))  # (B, 1, h, w)
        logits_fake = self.discriminator(self._disc_input(xrec_detached.detach(), cond))
        d_loss = self.disc_factor(step) * D_LOSSES[self.config.disc_loss](logits_real, logits_fake)
        logs = {"disc_loss": d_loss, "logits_real": logits_real.mean(), "logits_fake": logits_fake.mean()}
        return d_loss, _detach_logs(logs)
