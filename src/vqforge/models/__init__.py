"""Models: the VQGAN first stage and the GPT second stage. Never imports training or CLI code."""

from .vqgan import VQGAN, AutoencoderConfig, Decoder, Encoder, VQGANConfig, VQGANOutput

__all__ = ["VQGAN", "VQGANConfig", "AutoencoderConfig", "Encoder", "Decoder", "VQGANOutput"]
