"""The VQGAN's inference levers (vqforge.models.inference.VQGANRunner) against the exact path and the original.

Tolerances (relative L2 error, ||out - ref|| / ||ref||): fp32 ~1e-6 (NCHW) and ~2e-6 (channels_last, other
convolution kernels) of the original's outputs; bf16 decoding of the same codes within 3e-2 (bf16 keeps 8 bits
of mantissa; measured 1.7e-2). bf16 encoding may move a latent across the boundary between two near-equidistant
codes: at least 97% of the codes must agree (measured 99.2% on the original's random-weight reference model).
"""

import pytest
import torch

from conftest import reference
from vqforge.devices import cpu_bf16_supported
from vqforge.models.inference import VQGANRunner
from vqforge.models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
from vqforge.quantizers import VQConfig


def _reference_model():
    ref = reference("vqgan_f4_legacy")
    c = ref["config"]
    dd = {**c["ddconfig"], "ch_mult": tuple(c["ddconfig"]["ch_mult"]),
          "attn_resolutions": tuple(c["ddconfig"]["attn_resolutions"])}
    model = VQGAN(VQGANConfig(AutoencoderConfig(**dd),
                              VQConfig(n_embed=c["n_embed"], embed_dim=c["embed_dim"], legacy=True)))
    model.load_state_dict(ref["state_dict"])
    return model, ref["inputs"]["x"], ref["outputs"]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("channels_last,tol", [(False, 1e-5), (True, 1e-5)])
def test_fp32_runner_matches_the_original(one_thread, channels_last, tol):
    model, x, out = _reference_model()
    runner = VQGANRunner(model, precision="fp32", channels_last=channels_last)
    assert runner.mode == ("fp32+channels_last" if channels_last else "fp32")
    res = runner(x)
    assert torch.equal(res.quantizer.indices, out["indices"])
    assert rel(res.reconstruction, out["dec"]) < tol
    assert res.reconstruction.is_contiguous()  # NCHW out, whatever ran inside
    assert rel(runner.decode_indices(out["indices"]), out["dec"]) < tol
    assert torch.equal(runner.encode_to_indices(x), out["indices"])


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bf16 (AVX512-BF16 / AMX)")
@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_runner_is_close_to_the_exact_path(one_thread, channels_last):
    model, x, out = _reference_model()
    runner = VQGANRunner(model, precision="bf16", channels_last=channels_last)
    assert runner.mode.startswith("bf16")
    res = runner(x)
    assert res.reconstruction.dtype == torch.float32
    assert float((res.quantizer.indices == out["indices"]).float().mean()) >= 0.97
    assert rel(runner.decode_indices(out["indices"]), out["dec"]) < 3e-2


def test_auto_precision_follows_the_device(one_thread):
    model, _, _ = _reference_model()
    runner = VQGANRunner(model, precision="auto")
    assert runner.mode == ("bf16+channels_last" if cpu_bf16_supported() else "fp32")


def test_codebook_lookup_stays_fp32_under_autocast(one_thread):
    """Under bf16 autocast the encoder's latents are bf16, but the nearest-code search must see fp32 distances.

    Codes and latents clustered around one point make distances whose differences bf16 cannot resolve: a bf16
    lookup picks another code for most latents; ``quantize_latents`` must pick exactly the fp32 lookup's codes.
    """
    model, _, _ = _reference_model()
    model.eval()
    g = torch.Generator().manual_seed(0)
    dim = model.quantize.embed_dim
    centre = torch.randn(dim, generator=g)
    with torch.no_grad():
        model.quantize.embedding.weight.copy_(centre + 0.05 * torch.randn(model.n_codes, dim, generator=g))
        h = (centre[None, :, None, None] + 0.05 * torch.randn(4, dim, 8, 8, generator=g)).to(torch.bfloat16)
        exact = model.quantize(h.float())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            naive = model.quantize(h)  # what a plain autocast forward would do
            q = model.quantize_latents(h)
    assert float((naive.indices == exact.indices).float().mean()) < 0.5  # the trap is real
    assert torch.equal(q.indices, exact.indices)
    assert q.quantized.dtype == torch.float32 and q.losses["loss"].dtype == torch.float32


def test_decode_indices_runs_channels_last_and_matches_the_original(one_thread):
    """VQGAN.decode_indices (what sampling decodes with) runs the decoder channels-last on a CPU: the images are
    the original's within the fp32 channels-last tolerance above, and come back contiguous NCHW."""
    model, _, out = _reference_model()
    model.eval()
    seen = []
    hook = model.decoder.conv_in.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.inference_mode():
        dec = model.decode_indices(out["indices"])
    hook.remove()
    assert seen == [True]
    assert dec.is_contiguous() and rel(dec, out["dec"]) < 1e-5
