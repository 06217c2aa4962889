"""VQGAN training losses: PatchGAN discriminator, perceptual distances, and the combined VQGAN objective.

Typical use (one training step)::

    loss = VQGANLoss(VQGANLossConfig(disc_start=10000, perceptual="lpips-vgg16"))
    out = model(x)                                   # vqforge.models.vqgan.VQGAN
    g_total, g_logs = loss.generator_loss(x, out.reconstruction, out.quantizer.losses["loss"],
                                          model.last_layer, step)
    d_total, d_logs = loss.discriminator_loss(x, out.reconstruction.detach(), step)
"""

from .discriminator import ActNorm, NLayerDiscriminator, strip_prefix, weights_init
from .perceptual import (OFFLINE_HINT, PERCEPTUAL_KINDS, LPIPS, InceptionPerceptual, PerceptualLoss,
                         build_perceptual, locate_fid_inception, locate_lpips_heads)
from .vqgan_loss import (VQGANLoss, VQGANLossConfig, adaptive_weight, adopt_weight, hinge_d_loss,
                         vanilla_d_loss)

__all__ = [
    "ActNorm", "NLayerDiscriminator", "strip_prefix", "weights_init",
    "OFFLINE_HINT", "PERCEPTUAL_KINDS", "LPIPS", "InceptionPerceptual", "PerceptualLoss", "build_perceptual",
    "locate_fid_inception", "locate_lpips_heads",
    "VQGANLoss", "VQGANLossConfig", "adaptive_weight", "adopt_weight", "hinge_d_loss", "vanilla_d_loss",
]
