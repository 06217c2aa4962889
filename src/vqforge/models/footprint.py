"""Peak-memory estimates of the size-dependent work, derived from a model's config alone (nothing is allocated).

Each function walks the network as its forward runs it and returns the bytes alive at the worst moment, for
float32 activations under ``torch.inference_mode`` (each temporary is freed as soon as the next op has used it):

* :func:`autoencoder_bytes`: a VQGAN encoder or decoder (:class:`~vqforge.models.vqgan.Encoder` /
  :class:`~vqforge.models.vqgan.Decoder`) on one size: per ResNet block its input, the normalised and activated
  copies and both convolutions' outputs; per up/downsampling the input and the resampled tensor twice; per
  attention block (``AttnBlock``, the decoder's ``mid.attn_1`` and every level whose resolution is in
  ``attn_resolutions``) the normalised input, q, k, v and the positions x positions score matrix, which is what
  grows fastest;
* :func:`gpt_bytes`: the key/value cache of a sampling session, a prefill's activations and scores, the logits;
* :func:`vqgan_train_bytes`: a VQGAN training step (every activation kept for the backward pass, the
  discriminator, the gradients).

Calibration. The per-op counts are multiplied by :data:`SAFETY` after comparing them with the peak resident set
(``ru_maxrss``) measured around the same work, one fresh process per size, 1 thread, torch 2.13 CPU, on the two
bundled models (``OMP_NUM_THREADS=1 python bench/memory_calibration.py`` repeats it; it prints measured, estimate and
their ratio). Measured / estimated on 2026-12-07 (2-core x86_64): fashion's decoder at 32-96 tokens a side
0.50-0.85, its encoder at 128-384 px 0.38-0.59; landscapes' decoder at 16-64 tokens 0.57-0.85, its encoder at
128-512 px 0.35-0.69: never above 1, never below a third. ``tests/test_memory_budget.py`` checks the bound again
on two small sizes. Torch's CPU attention takes the math path here (the transposed q/k/v are not contiguous), whose
scores cost about 2.3 x positions^2 x 4 bytes: the term that makes a decoder with attention at its latent
resolution (fashion's, f4) infeasible long before its convolutions are.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gpt import GPTConfig
from .vqgan import AutoencoderConfig, VQGANConfig

F32 = 4
#: measured peak / counted tensors stayed below 1 with this factor on every calibration size (see the module docs)
SAFETY = 1.5
#: bytes of the math attention's scores per (position x position) pair: the scores and their softmax (2.3 x 4
#: measured alone; 3 x 4 covers the block's other tensors alive beside them)
ATTN_SCORE_BYTES = 3 * F32


def attention_bytes(positions: int, channels: int, batch: int = 1) -> int:
    """One spatial self-attention block over ``positions`` (B, C, H, W -> H*W positions)."""
    return int(batch * (5 * channels * positions * F32 + ATTN_SCORE_BYTES * positions * positions))


def _resnet(c_in: int, c_out: int, positions: int) -> int:
    return (c_in + 4 * c_out) * positions * F32  # input, normalised, activated, two conv outputs


@dataclass(frozen=True)
class Walk:
    """What a forward over one input costs: ``peak`` bytes alive at once (the largest step plus the tensor carried
    into it), ``total`` bytes of every activation (what training keeps for the backward pass), and the largest
    attention block's share of ``peak`` (``attention``)."""

    peak: int
    total: int
    attention: int


def autoencoder_bytes(dd: AutoencoderConfig, hw: tuple[int, int], part: str = "decoder", batch: int = 1) -> Walk:
    """The ``part`` ('encoder': images of ``hw`` pixels; 'decoder': a latent grid of ``hw``) of an autoencoder of
    config ``dd``, on a batch of ``batch``."""
    n = len(dd.ch_mult)
    f = dd.downsample_factor
    steps: list[int] = []
    attn: list[int] = []

    def level_attention(i_level: int) -> bool:  # attention is placed by the config's resolution, as in vqgan.py
        return (dd.resolution // 2 ** i_level) in dd.attn_resolutions

    def block(c_in: int, c_out: int, p: int, with_attn: bool) -> None:
        steps.append(_resnet(c_in, c_out, p))
        if with_attn:
            attn.append(attention_bytes(p, c_out))
            steps.append(attn[-1])

    if part == "encoder":
        H, W = hw
        p = H * W
        steps.append((dd.in_channels + dd.ch) * p * F32)
        c_in = dd.ch
        for i in range(n):
            c_out = dd.ch * dd.ch_mult[i]
            for b in range(dd.num_res_blocks):
                block(c_in if b == 0 else c_out, c_out, p, level_attention(i))
            c_in = c_out if dd.num_res_blocks else c_in
            if i != n - 1:
                steps.append(int(2.25 * c_in * p * F32))  # input, padded copy, strided output
                p = max(1, p // 4)
        c_top = c_in
    elif part == "decoder":
        p = hw[0] * hw[1]
        c_top = dd.ch * dd.ch_mult[-1]
        steps.append((dd.z_channels + c_top) * p * F32)
    else:
        raise ValueError(f"part {part!r}: encoder or decoder")
    steps += [_resnet(c_top, c_top, p), attention_bytes(p, c_top), _resnet(c_top, c_top, p)]
    attn.append(attention_bytes(p, c_top))
    if part == "decoder":
        c_in = c_top
        for i in reversed(range(n)):
            c_out = dd.ch * dd.ch_mult[i]
            for b in range(dd.num_res_blocks + 1):
                block(c_in if b == 0 else c_out, c_out, p, level_attention(i))
                c_in = c_out
            if i != 0:
                steps.append(9 * c_in * p * F32)  # input, nearest 2x copy, convolved copy
                p *= 4
        steps.append((2 * c_in + dd.out_ch) * p * F32)
    return Walk(peak=int(SAFETY * batch * max(steps)), total=int(batch * sum(steps)),
                attention=int(SAFETY * batch * max(attn)))


def vqgan_decode_bytes(cfg: VQGANConfig, grid_hw: tuple[int, int], batch: int = 1) -> Walk:
    """Decoding a (batch, h, w) token grid to images (codebook lookup, post-quant conv, decoder)."""
    return autoencoder_bytes(cfg.ddconfig, grid_hw, "decoder", batch)


def vqgan_encode_bytes(cfg: VQGANConfig, image_hw: tuple[int, int], batch: int = 1) -> Walk:
    """Encoding (batch, C, H, W) images to tokens (encoder, quant conv, nearest-code search)."""
    walk = autoencoder_bytes(cfg.ddconfig, image_hw, "encoder", batch)
    f = cfg.ddconfig.downsample_factor
    tokens = (image_hw[0] // f) * (image_hw[1] // f) * batch
    n_codes = getattr(cfg.quantizer, "n_embed", 0) or getattr(cfg.quantizer, "n_codes", 0) or 1024
    search = tokens * n_codes * F32 * 2  # the distance matrix (tokens x codes) and its argmin's work
    return Walk(max(walk.peak, int(SAFETY * search)), walk.total + search, walk.attention)


def gpt_bytes(cfg: GPTConfig, batch: int, length: int) -> int:
    """A sampling session of ``batch`` rows (2x with guidance) over ``length`` positions (condition + window):
    the key/value cache, one prefill's activations and scores, the logits."""
    cache = 2 * cfg.n_layer * batch * length * cfg.n_embd * F32
    prefill = batch * length * (12 * cfg.n_embd + 2 * cfg.n_head * length) * F32
    logits = batch * cfg.vocab_size * 3 * F32
    return int(SAFETY * (cache + prefill + logits))


def vqgan_train_bytes(cfg: VQGANConfig, image_hw: tuple[int, int], batch: int) -> int:
    """One training step of a VQGAN on (batch, C, H, W) crops: every activation of encoder and decoder kept for
    the backward pass (twice: the generator and the discriminator steps each run a forward), the discriminator's
    and the perceptual loss's activations (about as many again as the decoder's last level), and the backward
    pass's own peak (the largest forward step again)."""
    f = cfg.ddconfig.downsample_factor
    enc = autoencoder_bytes(cfg.ddconfig, image_hw, "encoder", batch)
    dec = autoencoder_bytes(cfg.ddconfig, (image_hw[0] // f, image_hw[1] // f), "decoder", batch)
    top = batch * image_hw[0] * image_hw[1] * cfg.ddconfig.ch * F32
    return int(SAFETY * (enc.total + dec.total + 8 * top) + max(enc.peak, dec.peak))


def vqgan_roundtrip_bytes(cfg: VQGANConfig, image_hw: tuple[int, int], batch: int = 1) -> int:
    """Encoding and decoding (batch, C, H, W) images (``reconstruct``, ``evaluate recon``): the input, the
    larger of the two passes, the reconstruction and the file's pixels being read and resized."""
    f = cfg.ddconfig.downsample_factor
    pixels = image_hw[0] * image_hw[1]
    walk = max(vqgan_encode_bytes(cfg, image_hw, batch).peak,
               vqgan_decode_bytes(cfg, (image_hw[0] // f, image_hw[1] // f), batch).peak)
    images = batch * pixels * (cfg.ddconfig.in_channels + 2 * cfg.ddconfig.out_ch) * F32
    return int(walk + images + 4 * 3 * pixels)


def vqgan_encode_job_bytes(cfg: VQGANConfig, side: int, batch: int, resize_max: int = 0,
                           cond: VQGANConfig | None = None) -> int:
    """``vqforge encode``: batches of (batch, C, side, side) crops through the encoder (and a condition stage's
    maps through its encoder), two batches in flight, and one photo resized to ``resize_max`` (aspect up to 2:1)
    being cut."""
    need = vqgan_encode_bytes(cfg, (side, side), batch).peak + 3 * batch * side * side * cfg.ddconfig.in_channels * F32
    if cond is not None:
        need += (vqgan_encode_bytes(cond, (side, side), batch).peak
                 + 3 * batch * side * side * cond.ddconfig.in_channels * F32)
    r = max(side, resize_max)
    return int(need + 2 * r * r * 3 * (1 + F32))
