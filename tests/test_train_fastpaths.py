"""The training levers (what `vqforge bench` calls "vqforge fast") against the exact path.

One VQGAN step (``generator_step`` + ``discriminator_step``, LPIPS and GAN on) and one GPT step, from the same
weights and inputs, taken the exact way (fp32, NCHW) and with a lever on; tolerances (measured values in
brackets, random-initialised tiny models, 1 thread):

* channels_last (fp32): the same arithmetic in another memory layout, summed in another order; losses within
  :func:`reordered_fp32_bound` relative (derived below) [6e-7; g_loss 5.6e-6 on an Intel Xeon, 1.08e-5 on an
  AMD EPYC, which failed the old bound of 1e-5 taken from one machine], gradients within 1e-2 relative L2 [1.5e-3:
  the GAN term's adaptive weight, a ratio of two gradient norms, amplifies the losses' differences].
* fused Adam / AdamW: the same update in one kernel, given the same gradients; weights after three steps within
  1e-6 of torch's default kernel's.
* bf16 autocast (CPUs with native bf16): 8 bits of mantissa in the matrix products. VQGAN: losses within 2e-2
  relative [1e-3], gradients pointing the same way, cosine > 0.85 [0.90; 0.98 without the GAN term].
  GPT: loss within 1e-3 relative [3e-5], gradient cosine > 0.999 [0.99999]. That bf16 training also *learns*
  as fp32 does is tests/test_train_precision.py.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from vqforge.devices import cpu_bf16_supported
from vqforge.losses.perceptual import LPIPS
from vqforge.losses.vqgan_loss import VQGANLoss, VQGANLossConfig
from vqforge.models.gpt import GPT, GPTConfig
from vqforge.models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
from vqforge.quantizers import VQConfig
from vqforge.train.numerics import adam, autocast
from vqforge.train.vqgan import discriminator_step, generator_step

needs_bf16 = pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bf16 (AVX512-BF16 / AMX)")
CPU = torch.device("cpu")


#: fp32 unit roundoff: one rounding changes a value by at most this fraction.
U32 = 2.0 ** -24


def reordered_fp32_bound(*nets: torch.nn.Module, n_mean: int, lam: float = 3.0) -> float:
    """How far (relative) a loss may move when every fp32 sum of the step is taken in another order.

    A sum of K fp32 terms taken in two orders differs by at most 2(K-1)u * sum|terms| (u = 2^-24; Higham,
    *Accuracy and Stability of Numerical Algorithms*, sec. 4.2); treating the roundings as independent, zero-mean
    errors (Higham & Mary, "A new approach to probabilistic rounding error analysis", SIAM J. Sci. Comput. 2019)
    the difference is below lam * sqrt(K) * u with probability at least 1 - 2 exp(-lam^2 / 2) (lam = 3: 0.98 per
    sum, far more for the whole bound, which adds worst cases). A layer's output passes its relative error on to
    the next (first order), so along a path of D reductions the errors add: D * lam * sqrt(K_max) * u. D here
    counts every convolution and linear layer of the networks (more than any one path through them), K_max is the
    longest reduction (a layer's fan-in C_in * kh * kw, or the loss's mean over ``n_mean`` elements). Nothing in
    it is measured: a CPU with other kernels (AVX-512 vs AMX, other blockings) stays inside it.
    """
    depth, longest = 1, n_mean  # the final mean is one more reduction
    for net in nets:
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                depth, longest = depth + 1, max(longest, m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
            elif isinstance(m, torch.nn.Linear):
                depth, longest = depth + 1, max(longest, m.in_features)
    return depth * lam * longest ** 0.5 * U32


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.float().flatten(), b.float().flatten(), dim=0))


def flat_grads(*modules: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for m in modules for p in m.parameters() if p.grad is not None])


# ============================================================================================ VQGAN
@functools.lru_cache(maxsize=1)
def _vqgan_state() -> tuple[dict, dict, LPIPS, torch.Tensor]:
    """Weights (VQGAN, discriminator), a random-weight LPIPS (frozen, so one serves every step) and an input
    batch, shared by every step of this file."""
    torch.manual_seed(0)
    model, lpips = VQGAN(_vqgan_config()), LPIPS()
    loss = VQGANLoss(VQGANLossConfig(disc_start=0), perceptual=lpips)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return model.state_dict(), loss.discriminator.state_dict(), lpips, x


def _vqgan_config() -> VQGANConfig:
    dd = AutoencoderConfig(ch=32, out_ch=3, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), dropout=0.0,
                           in_channels=3, resolution=32, z_channels=16, double_z=False)
    return VQGANConfig(ddconfig=dd, quantizer=VQConfig(n_embed=64, embed_dim=16, legacy=True))


def vqgan_step(dtype: torch.dtype = torch.float32, channels_last: bool = False):
    """One training step's forward and backward the trainer's way: (generator logs, discriminator logs,
    (autoencoder gradients, discriminator gradients))."""
    model_state, disc_state, lpips, x = _vqgan_state()
    model, loss = VQGAN(_vqgan_config()), VQGANLoss(VQGANLossConfig(disc_start=0), perceptual=lpips)
    model.load_state_dict(model_state)
    loss.discriminator.load_state_dict(disc_state)
    if channels_last:
        model, loss = model.to(memory_format=torch.channels_last), loss.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = functools.partial(autocast, CPU, dtype)
    g = generator_step(model, loss, x, 1, autocast=ctx)
    d = discriminator_step(loss, x, g.reconstruction, 1, autocast=ctx)
    return g.logs, d, (flat_grads(model), flat_grads(loss.discriminator))


def test_vqgan_step_in_channels_last_matches_the_exact_path(one_thread):
    """channels_last changes only the order of fp32 sums: every loss stays within the reordered-sum bound
    (:func:`reordered_fp32_bound`: 1.2e-3 here, 73 layers, K_max 8192), which a layout bug (a transposed
    channel, a wrong stride) exceeds by orders of magnitude."""
    g0, d0, grads0 = vqgan_step()
    g1, d1, grads1 = vqgan_step(channels_last=True)
    model_state, disc_state, lpips, x = _vqgan_state()
    model, loss = VQGAN(_vqgan_config()), VQGANLoss(VQGANLossConfig(disc_start=0), perceptual=lpips)
    bound = reordered_fp32_bound(model, loss.discriminator, lpips, n_mean=x.numel())
    assert 1e-4 < bound < 1e-2  # loose enough for any CPU's kernels, tight enough to catch a wrong layout
    for key in ("total_loss", "nll_loss", "p_loss", "g_loss"):
        assert rel(g1[key], g0[key]) < bound, (key, rel(g1[key], g0[key]), bound)
    assert rel(d1["disc_loss"], d0["disc_loss"]) < bound
    assert rel(grads1[0], grads0[0]) < 1e-2 and rel(grads1[1], grads0[1]) < 1e-2


@needs_bf16
def test_vqgan_step_in_bf16_is_close_to_fp32(one_thread):
    g0, d0, grads0 = vqgan_step()
    g1, d1, grads1 = vqgan_step(torch.bfloat16, channels_last=True)
    assert all(v.dtype == torch.float32 for v in g1.values())  # the losses stay fp32
    for key in ("total_loss", "nll_loss"):
        assert rel(g1[key], g0[key]) < 2e-2, (key, g1[key], g0[key])
    assert rel(d1["disc_loss"], d0["disc_loss"]) < 2e-2
    assert cosine(grads1[0], grads0[0]) > 0.85 and cosine(grads1[1], grads0[1]) > 0.85


@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
def test_fused_adam_matches_the_default_kernel(decoupled):
    g = torch.Generator().manual_seed(0)
    shapes = [(64, 32, 3, 3), (64,), (1024, 16)]
    start = [torch.randn(s, generator=g) for s in shapes]
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(3)]
    weights = {}
    for fused in (False, True):
        params = [torch.nn.Parameter(w.clone()) for w in start]
        opt = adam([{"params": params[:2], "weight_decay": 0.01}, {"params": params[2:], "weight_decay": 0.0}],
                   1e-3, (0.5, 0.9), decoupled=decoupled, fused=fused)
        assert bool(opt.defaults.get("fused")) == fused
        for step in grads:
            for p, gr in zip(params, step):
                p.grad = gr.clone()
            opt.step()
        weights[fused] = torch.cat([p.detach().flatten() for p in params])
    moved = (weights[False] - torch.cat([w.flatten() for w in start])).abs()
    assert moved.median() > 1e-4  # the weights moved (lr 1e-3, three steps of random gradients) ...
    assert (weights[True] - weights[False]).abs().max() < 1e-6  # ... the same way in both kernels


# ============================================================================================ GPT
def gpt_step(dtype: torch.dtype = torch.float32):
    """One GPT training step's forward and backward the trainer's way (loss from fp32 logits): (loss, gradients)."""
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=64, block_size=33, n_layer=2, n_head=2, n_embd=64))
    seq = torch.randint(0, 64, (4, 33), generator=torch.Generator().manual_seed(1))
    with autocast(CPU, dtype):
        logits = gpt(seq[:, :-1])  # (B, T, vocab)
    loss = F.cross_entropy(logits.float().reshape(-1, 64), seq[:, 1:].reshape(-1))
    loss.backward()
    return loss.detach(), flat_grads(gpt)


@needs_bf16
def test_gpt_step_in_bf16_is_close_to_fp32(one_thread):
    loss0, grads0 = gpt_step()
    loss1, grads1 = gpt_step(torch.bfloat16)
    assert loss1.dtype == torch.float32
    assert rel(loss1, loss0) < 1e-3
    assert cosine(grads1, grads0) > 0.999
