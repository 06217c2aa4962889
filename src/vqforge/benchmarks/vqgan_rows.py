"""VQGAN rows: a training step (generator + discriminator, LPIPS on) and reconstruction, original vs vqforge.

Both implementations get the same weights (the original's, loaded into vqforge's modules under the same keys;
LPIPS on a random-weight VGG16, which costs what the real one does) and the same input batch.
"""

from __future__ import annotations

import contextlib
import functools
import io

import torch
from torch import nn

from ..devices import resolve_precision
from ..losses.perceptual import LPIPS
from ..losses.vqgan_loss import VQGANLoss, VQGANLossConfig
from ..models.inference import VQGANRunner
from ..models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
from ..quantizers import VQConfig
from ..train.numerics import adam, autocast
from ..train.vqgan import discriminator_step, generator_step
from . import original
from .measure import Contestant, held_tensors, is_fused
from .rows import EXACT, EXACT_LEVERS, FAST, FAST_LEVERS, ORIGINAL, Levers, Row, VQGANSpec

LR, BETAS = 4.5e-6, (0.5, 0.9)  # the original's base rate and betas


def vqforge_config(spec: VQGANSpec) -> VQGANConfig:
    """The vqforge config of the original model ``spec`` describes (legacy beta placement, as VQModel)."""
    dd = spec.ddconfig()
    dd.update(ch_mult=tuple(dd["ch_mult"]), attn_resolutions=tuple(dd["attn_resolutions"]))
    return VQGANConfig(ddconfig=AutoencoderConfig(**dd),
                       quantizer=VQConfig(n_embed=spec.n_embed, embed_dim=spec.embed_dim, legacy=True))


class _Models:
    """The original VQModel (when importable) and the state dicts vqforge's copies are built from."""

    def __init__(self, spec: VQGANSpec, device: torch.device, with_original: bool, with_loss: bool):
        self.spec, self.device = spec, device
        self.orig = None
        if with_original:
            with contextlib.redirect_stdout(io.StringIO()):  # its loss prints a banner
                loss = original.build_loss() if with_loss else None
                self.orig = original.OrigVQModel(spec.ddconfig(), spec.n_embed, spec.embed_dim, loss).to(device)
            state = self.orig.state_dict()
            self.model_state = {k: v for k, v in state.items() if not k.startswith("loss.")}
            self.disc_state = {k[len("loss.discriminator."):]: v for k, v in state.items()
                               if k.startswith("loss.discriminator.")}
            self.lpips_state = state
        else:
            self.model_state = VQGAN(vqforge_config(spec)).state_dict()
            self.disc_state = self.lpips_state = None

    def vqgan(self) -> VQGAN:
        m = VQGAN(vqforge_config(self.spec))
        m.load_state_dict(self.model_state, strict=True)
        return m.to(self.device)

    def loss(self) -> VQGANLoss:
        if self.lpips_state is not None:
            lpips = LPIPS.from_state_dict(self.lpips_state, prefix="loss.perceptual_loss.")
        else:
            lpips = LPIPS()  # random VGG16 and heads: the same arithmetic
        loss = VQGANLoss(VQGANLossConfig(disc_start=0), perceptual=lpips)
        if self.disc_state is not None:
            loss.discriminator.load_state_dict(self.disc_state, strict=True)
        return loss.to(self.device)

    @torch.no_grad()
    def agreement(self, x: torch.Tensor) -> float | None:
        """max |original(x) - vqforge(x)| of the reconstructions (fp32, eval mode)."""
        if self.orig is None:
            return None
        was = self.orig.training
        ours, orig = self.vqgan().eval(), self.orig.eval()
        diff = float((orig(x)[0] - ours(x).reconstruction).abs().max())
        self.orig.train(was)
        return diff

    def batch(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        s = self.spec
        return (torch.rand(s.batch, 3, s.resolution, s.resolution, generator=g) * 2 - 1).to(self.device)


#: vqforge's contestants in a VQGAN row unless the suite names others: the exact path and the fast one
VARIANTS = {EXACT: EXACT_LEVERS, FAST: FAST_LEVERS}


def _vqgan_row(row_id: str, what: str, spec: VQGANSpec, device: torch.device, with_original: bool, target: str,
               with_loss: bool) -> tuple[_Models, torch.Tensor, Row]:
    """What the training and reconstruction rows set up alike: the models (the loss's too with ``with_loss``),
    the input batch, and the row titled ``what`` with the two implementations' agreement on that batch."""
    models = _Models(spec, device, with_original, with_loss=with_loss)
    x = models.batch()
    row = Row(row_id, f"{what} ({spec.label()}), batch {spec.batch} at {spec.resolution}²", "img/s",
              items=spec.batch, target=target, agreement=models.agreement(x))
    return models, x, row


def _original_forward(orig: nn.Module, x: torch.Tensor, note: str) -> Contestant:
    """The original module's forward on ``x`` without gradients, as a contestant."""
    def run() -> None:
        with torch.no_grad():
            orig(x)

    return Contestant(ORIGINAL, run, held=lambda: held_tensors(orig), note=note)


# ============================================================================================ training step
def _original_train_step(orig: nn.Module, x: torch.Tensor) -> Contestant:
    """The original's step as Lightning runs it: optimiser 0 (autoencoder) then optimiser 1 (discriminator),
    each with a fresh autoencoder forward and the other optimiser's parameters frozen, all in fp32."""
    ae_params = orig.autoencoder_parameters()
    disc_params = list(orig.loss.discriminator.parameters())
    opt_ae = torch.optim.Adam(ae_params, lr=LR, betas=BETAS)
    opt_disc = torch.optim.Adam(disc_params, lr=LR, betas=BETAS)
    step = 1  # GAN on (disc_start 0)

    def toggle(params, on: bool) -> None:
        for p in params:
            p.requires_grad_(on)

    def run() -> None:
        orig.train()
        for opt_idx, (opt, frozen) in enumerate(((opt_ae, disc_params), (opt_disc, ae_params))):
            toggle(frozen, False)  # Lightning's toggle_optimizer
            opt.zero_grad(set_to_none=True)
            xrec, qloss = orig(x)
            loss, _ = orig.loss(qloss, x, xrec, opt_idx, step, last_layer=orig.get_last_layer(), split="train")
            loss.backward()
            opt.step()
            toggle(frozen, True)

    return Contestant(ORIGINAL, run, held=lambda: held_tensors(orig, opt_ae, opt_disc),
                      note="Lightning's order: the autoencoder runs again for the discriminator step; fp32")


def vqforge_train_step(models: _Models, x: torch.Tensor, levers: Levers, name: str) -> Contestant:
    """vqforge's step as its trainer takes it (``generator_step``, then ``discriminator_step`` on the kept
    reconstruction; the trainer's precision context and Adam) with ``levers``."""
    device = models.device
    model, loss = models.vqgan(), models.loss()
    amp = resolve_precision(levers.precision, device) == torch.bfloat16
    ctx = functools.partial(autocast, device, torch.bfloat16 if amp else torch.float32)
    if levers.channels_last:
        model = model.to(memory_format=torch.channels_last)
        loss = loss.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt_ae = adam(model.parameters(), LR, BETAS, fused=levers.fused)
    opt_disc = adam(loss.discriminator.parameters(), LR, BETAS, fused=levers.fused)
    model.train()
    loss.train()
    net = torch.compile(model) if levers.compile else model

    def run() -> None:
        opt_ae.zero_grad(set_to_none=True)
        g = generator_step(net, loss, x, 1, autocast=ctx)
        opt_ae.step()
        opt_disc.zero_grad(set_to_none=True)
        discriminator_step(loss, x, g.reconstruction, 1, autocast=ctx)
        opt_disc.step()

    note = ("bf16 autocast" if amp else "fp32") + "".join(
        f", {k}" for k, on in (("channels_last", levers.channels_last), ("fused Adam", is_fused(opt_ae)),
                               ("torch.compile", levers.compile)) if on)
    return Contestant(name, run, held=lambda: held_tensors(model, loss, opt_ae, opt_disc),
                      note=note + "; discriminator reuses the reconstruction", warmup=int(levers.compile))


def vqgan_train_row(spec: VQGANSpec, device: torch.device, with_original: bool, target: str = "",
                    variants: dict[str, Levers] | None = None) -> Row:
    """VQGAN training step, generator + discriminator, LPIPS on: original vs vqforge fp32 vs vqforge fast
    (``variants``: other vqforge contestants by name, e.g. one lever off each)."""
    models, x, row = _vqgan_row("vqgan_train", "VQGAN train step gen+disc, LPIPS on", spec, device, with_original,
                                target, with_loss=True)
    if models.orig is not None:
        row.contestants.append(_original_train_step(models.orig, x))
    row.contestants += [vqforge_train_step(models, x, lv, name) for name, lv in (variants or VARIANTS).items()]
    return row


# ============================================================================================ reconstruction
def vqgan_reconstruct_row(spec: VQGANSpec, device: torch.device, with_original: bool, target: str = "",
                          variants: dict[str, Levers] | None = None) -> Row:
    """Encode + quantise + decode a batch: original (fp32) vs vqforge fp32 vs vqforge fast
    (:class:`~vqforge.models.inference.VQGANRunner`; ``variants``: other lever sets by name)."""
    models, x, row = _vqgan_row("vqgan_reconstruct", "VQGAN reconstruct", spec, device, with_original, target,
                                with_loss=False)
    if models.orig is not None:
        row.contestants.append(_original_forward(models.orig.eval(), x, "fp32"))
    for name, lv in (variants or VARIANTS).items():
        runner = VQGANRunner(models.vqgan(), precision=lv.precision, channels_last=lv.channels_last,
                             compile=lv.compile)
        row.contestants.append(Contestant(name, lambda r=runner: r(x), held=lambda r=runner: held_tensors(r.model),
                                          note=runner.mode, warmup=int(lv.compile)))
    return row


# ============================================================================================ attention block
def vqgan_attention_row(channels: int, side: int, batch: int, device: torch.device, with_original: bool) -> Row:
    """One VQGAN attention block (single head over side x side positions) forward: the original's bmm + softmax
    (an (HW)^2 attention matrix) against vqforge's SDPA, fp32 and under bf16 autocast (e.g. decoding a large
    image, whose bottleneck attends over every latent position)."""
    from ..devices import autocast
    from ..nn.blocks import AttnBlock

    ours = AttnBlock(channels).to(device).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, side, side, generator=g).to(device)
    row = Row("vqgan_attention", f"VQGAN attention block, {channels} channels over {side}x{side} positions, "
                                 f"batch {batch}, forward", "img/s", items=batch)
    if with_original:
        from taming.modules.diffusionmodules.model import AttnBlock as OrigAttnBlock

        orig = OrigAttnBlock(channels).to(device).eval()
        ours.load_state_dict(orig.state_dict())
        with torch.no_grad():
            row.agreement = float((orig(x) - ours(x)).abs().max())
        row.contestants.append(_original_forward(orig, x, "bmm + softmax, fp32"))
    dtype = resolve_precision("auto", device)
    for name, dt in ((EXACT, torch.float32), (FAST, dtype)):
        def run(dt=dt) -> None:
            with torch.no_grad(), autocast(device, dt):
                ours(x)

        row.contestants.append(Contestant(name, run, held=lambda: held_tensors(ours),
                                          note=f"SDPA, {'bf16 autocast' if dt == torch.bfloat16 else 'fp32'}"))
    return row
