"""The VQGAN first stage: convolutional encoder, quantizer, decoder (the original ``VQModel`` / ``GumbelVQ``).

Parameter names follow the original checkpoints exactly (``encoder.*``, ``decoder.*``, ``quant_conv.*``,
``quantize.*``, ``post_quant_conv.*``) so their weights load without renaming.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.blocks import AttnBlock, Downsample, Normalize, ResnetBlock, Upsample, swish
from ..quantizers import Quantizer, QuantizerConfig, QuantizerOutput, VQConfig


@dataclass(frozen=True)
class AutoencoderConfig:
    """The original's ``ddconfig``: encoder/decoder shape.

    ch: base width; ch_mult: width multiplier per resolution level (len - 1 downsamplings);
    num_res_blocks: ResnetBlocks per level; attn_resolutions: feature-map sizes that get an AttnBlock;
    resolution: training image size (used to place attention); z_channels: latent channels;
    double_z: encoder outputs 2 * z_channels (unused by VQGAN, kept for config compatibility).
    """

    ch: int = 128
    out_ch: int = 3
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.0
    resamp_with_conv: bool = True
    in_channels: int = 3
    resolution: int = 256
    z_channels: int = 256
    double_z: bool = False

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class VQGANConfig:
    """A complete first-stage model: autoencoder shape plus quantizer (the config of one quantizer kind, e.g.
    :class:`~vqforge.quantizers.VQConfig`; in YAML ``quantizer: {kind: ema, ...}``)."""

    ddconfig: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    quantizer: QuantizerConfig = field(default_factory=VQConfig)


def _middle(channels: int, dropout: float) -> nn.Module:
    """The bottleneck of encoder and decoder: ResnetBlock, AttnBlock, ResnetBlock (keys ``mid.*``)."""
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, dropout=dropout)
    mid.attn_1 = AttnBlock(channels)
    mid.block_2 = ResnetBlock(channels, channels, dropout=dropout)
    return mid


def _level(block_in: int, block_out: int, n_blocks: int, with_attn: bool, dropout: float) -> nn.Module:
    """One resolution level: ``n_blocks`` ResnetBlocks (keys ``block.N``), each followed by an AttnBlock
    (``attn.N``) when ``with_attn``. The caller adds ``downsample`` / ``upsample``."""
    level = nn.Module()
    level.block = nn.ModuleList(
        [ResnetBlock(block_in if i == 0 else block_out, block_out, dropout=dropout) for i in range(n_blocks)])
    level.attn = nn.ModuleList([AttnBlock(block_out) for _ in range(n_blocks)] if with_attn else [])
    return level


class Encoder(nn.Module):
    """Image (B, in_channels, H, W) -> latents (B, z_channels, H/f, W/f)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.num_resolutions = len(cfg.ch_mult)
        self.num_res_blocks = cfg.num_res_blocks
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, stride=1, padding=1)
        curr_res = cfg.resolution
        in_ch_mult = (1,) + tuple(cfg.ch_mult)
        self.down = nn.ModuleList()
        block_in = cfg.ch
        for i_level in range(self.num_resolutions):
            block_in = cfg.ch * in_ch_mult[i_level]
            block_out = cfg.ch * cfg.ch_mult[i_level]
            level = _level(block_in, block_out, cfg.num_res_blocks, curr_res in cfg.attn_resolutions, cfg.dropout)
            block_in = block_out if cfg.num_res_blocks else block_in
            if i_level != self.num_resolutions - 1:
                level.downsample = Downsample(block_in, cfg.resamp_with_conv)
                curr_res //= 2
            self.down.append(level)
        self.mid = _middle(block_in, cfg.dropout)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * cfg.z_channels if cfg.double_z else cfg.z_channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.conv_in(x))  # (B, z, H/f, W/f)

    def crop_stems(self, x: torch.Tensor, stem: torch.Tensor, boxes: list[tuple[int, int, int, int]]
                   ) -> torch.Tensor:
        """``conv_in`` of crops of ``x`` (B, C, H, W), each convolved alone (its own zero padding): (N*B, ch, h, w),
        box-major, channels-last in memory, for the N equal-size pixel boxes (r0, r1, c0, c1), made from
        ``stem`` = ``conv_in(x)`` (B, ch, H, W) of the whole input instead of a convolution of every crop.

        Inside a crop the whole input's convolution and the crop's agree; only a crop's one-pixel rim sees the
        crop's zero padding where the whole input has neighbours, so the rim is convolved again from the crop's
        two-pixel edge strips (with ``conv_in``'s own padding they give the rim exactly as the crop would). Equal
        to ``conv_in(crops)`` up to the order of fp32 sums.
        """
        r0, r1, c0, c1 = boxes[0]
        crops = [x[..., a:b, c:d] for a, b, c, d in boxes]
        if r1 - r0 < 2 or c1 - c0 < 2:  # no interior: convolve the crops themselves
            return self.conv_in(torch.cat(crops)).contiguous(memory_format=torch.channels_last)
        hwc = stem.permute(0, 2, 3, 1)  # (B, H, W, ch): contiguous when the stem is channels-last
        out = torch.cat([hwc[:, a:b, c:d] for a, b, c, d in boxes]).permute(0, 3, 1, 2)  # (N*B, ch, h, w)
        n = len(crops) * x.shape[0]
        rows = self.conv_in(torch.cat([t[..., :2, :] for t in crops] + [t[..., -2:, :] for t in crops]))
        out[..., 0, :], out[..., -1, :] = rows[:n, :, 0], rows[n:, :, -1]  # top, bottom rows: (N*B, ch, w)
        # the columns as rows (a transposed strip through the transposed kernel): thin, wide strips convolve
        # faster than tall, narrow ones
        cols = torch.cat([t[..., :, :2] for t in crops] + [t[..., :, -2:] for t in crops]).transpose(2, 3)
        cols = F.conv2d(cols, self.conv_in.weight.transpose(2, 3), self.conv_in.bias, padding=1)  # (2n, ch, 2, h)
        out[..., :, 0], out[..., :, -1] = cols[:n, :, 0], cols[n:, :, -1]  # left, right columns: (N*B, ch, h)
        return out

    def trunk(self, h: torch.Tensor) -> torch.Tensor:
        """Everything after ``conv_in``: its output (B, ch, H, W) -> latents (B, z, H/f, W/f)."""
        for i_level, level in enumerate(self.down):
            for i_block in range(self.num_res_blocks):
                h = level.block[i_block](h)
                if len(level.attn) > 0:
                    h = level.attn[i_block](h)
            if i_level != self.num_resolutions - 1:
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(swish(self.norm_out(h)))  # (B, z, H/f, W/f)


class Decoder(nn.Module):
    """Latents (B, z_channels, h, w) -> image (B, out_ch, h*f, w*f)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.num_resolutions = len(cfg.ch_mult)
        self.num_res_blocks = cfg.num_res_blocks
        block_in = cfg.ch * cfg.ch_mult[-1]
        curr_res = cfg.resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, stride=1, padding=1)
        self.mid = _middle(block_in, cfg.dropout)
        up_levels: list[nn.Module] = []
        for i_level in reversed(range(self.num_resolutions)):
            block_out = cfg.ch * cfg.ch_mult[i_level]
            level = _level(block_in, block_out, cfg.num_res_blocks + 1, curr_res in cfg.attn_resolutions, cfg.dropout)
            block_in = block_out
            if i_level != 0:
                level.upsample = Upsample(block_in, cfg.resamp_with_conv)
                curr_res *= 2
            up_levels.insert(0, level)  # index = resolution level, as in the original's keys
        self.up = nn.ModuleList(up_levels)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, cfg.out_ch, 3, stride=1, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for i_level in reversed(range(self.num_resolutions)):
            level = self.up[i_level]
            for i_block in range(self.num_res_blocks + 1):
                h = level.block[i_block](h)
                if len(level.attn) > 0:
                    h = level.attn[i_block](h)
            if i_level != 0:
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))  # (B, out_ch, H, W)


class VQGANOutput(NamedTuple):
    """``VQGAN.forward`` result: the reconstruction and the quantizer's output."""

    reconstruction: torch.Tensor
    quantizer: QuantizerOutput


class VQGAN(nn.Module):
    """Encoder -> quant_conv -> quantizer -> post_quant_conv -> decoder.

    Images are float tensors in [-1, 1], NCHW. Latent grids are (h, w) = (H, W) / ``downsample_factor``.
    """

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        self.config = cfg
        dd, q = cfg.ddconfig, cfg.quantizer
        self.encoder = Encoder(dd)
        self.decoder = Decoder(dd)
        self.quant_conv = nn.Conv2d(dd.z_channels, q.embed_dim, 1)
        self.quantize: Quantizer = q.build(in_channels=q.embed_dim)
        self.post_quant_conv = nn.Conv2d(q.embed_dim, dd.z_channels, 1)

    @property
    def downsample_factor(self) -> int:
        return self.config.ddconfig.downsample_factor

    @property
    def n_codes(self) -> int:
        return self.quantize.n_codes

    @property
    def trained_hw(self) -> tuple[int, int]:
        """The image size (H, W) the model was made for (``ddconfig.resolution``): the default size of commands."""
        r = self.config.ddconfig.resolution
        return r, r

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's last weight, used by the adaptive GAN weight."""
        return self.decoder.conv_out.weight

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous latents before quantisation (B, embed_dim, h, w) (the original's ``h``)."""
        return self.quant_conv(self.encoder(x))

    def quantize_latents(self, h: torch.Tensor) -> QuantizerOutput:
        """The quantizer on latents ``h`` (B, embed_dim, h, w), always in fp32.

        Under bf16 autocast the encoder's latents arrive in bf16; the nearest-code search and the codebook
        losses still run in fp32 (a bf16 distance would pick a different code wherever two are close).
        A no-op for fp32 inputs outside autocast: the exact path is unchanged.
        """
        with torch.autocast(h.device.type, enabled=False):
            return self.quantize(h.float())

    def encode(self, x: torch.Tensor) -> QuantizerOutput:
        """Quantised latents, indices and quantizer losses for images ``x`` (B, C, H, W)."""
        return self.quantize_latents(self.encode_latents(x))

    def decode(self, quant: torch.Tensor) -> torch.Tensor:
        """Images (B, out_ch, H, W) from quantised latents (B, embed_dim, h, w)."""
        return self.decoder(self.post_quant_conv(quant))

    @torch.no_grad()
    def encode_to_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Codebook ids (B, h, w) for images ``x``."""
        return self.encode(x).indices

    @torch.no_grad()
    def encode_crops_to_indices(self, x: torch.Tensor, boxes: list[tuple[int, int, int, int]], chunk: int = 32
                                ) -> torch.Tensor:
        """Codebook ids (N, B, h, w) of the N equal-size pixel crops ``boxes`` = (r0, r1, c0, c1) of ``x``
        (B, C, H, W), each as :meth:`encode_to_indices` of the crop alone gives them, in batches of ``chunk``
        crops (x B); the encoder's first convolution runs once over the whole ``x``
        (:meth:`Encoder.crop_stems`), so overlapping crops do not pay for it again, and the rest runs on
        channels-last tensors (about twice as fast on CPU as NCHW for this encoder)."""
        stem = self.encoder.conv_in(x).contiguous(memory_format=torch.channels_last)  # (B, ch, H, W)
        out = []
        for start in range(0, len(boxes), chunk):
            part = boxes[start:start + chunk]
            h = self.encoder.crop_stems(x, stem, part)  # (n*B, ch, h, w)
            ids = self.quantize_latents(self.quant_conv(self.encoder.trunk(h))).indices  # (n*B, h/f, w/f)
            out.append(ids.reshape(len(part), x.shape[0], *ids.shape[1:]))
        return torch.cat(out)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Images (B, out_ch, H, W), contiguous, from codebook ids (B, h, w).

        On a CPU the decoder runs channels-last (oneDNN's own layout: 1.3-1.5x faster for the bundled fashion
        decoder at batch 32-64 than NCHW, whose convolutions reorder every input); equal to the NCHW decode up to
        the order of fp32 sums (a few 1e-6 on images in [-1, 1]).
        """
        quant = self.quantize.embed_indices(indices)  # (B, embed_dim, h, w)
        if quant.device.type == "cpu":
            quant = quant.contiguous(memory_format=torch.channels_last)
        return self.decode(quant).contiguous()

    def forward(self, x: torch.Tensor) -> VQGANOutput:
        q = self.encode(x)
        return VQGANOutput(self.decode(q.quantized), q)
