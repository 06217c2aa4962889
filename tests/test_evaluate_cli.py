"""`vqforge evaluate recon|samples` end to end on tiny inputs: JSON that parses, a table, clear errors."""

import json
import subprocess

import numpy as np
import pytest
import torch
from conftest import PYTHON, cli_env, fake_lpips_heads, fake_vgg16_state_dict, needs_fid_weights

from vqforge.api import save_model
from vqforge.imageio import save_tensor_image
from vqforge.models.vqgan import VQGAN, AutoencoderConfig, VQGANConfig
from vqforge.quantizers import VQConfig

needs_weights = needs_fid_weights


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


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    """A random VGG16 trunk and random LPIPS heads, in the standard file layouts."""
    root = tmp_path_factory.mktemp("lpips")
    torch.save(fake_vgg16_state_dict(), root / "vgg16.pth")
    torch.save(fake_lpips_heads(), root / "heads.pth")
    return root / "vgg16.pth", root / "heads.pth"


def test_recon_metrics_match_an_independent_computation(tiny_vqgan, lpips_files, tmp_path):
    data = _images(tmp_path / "data", 6, 0)
    out = tmp_path / "recon.json"
    r = _cli("recon", "--model", tiny_vqgan, "--data", data, "--json", out, "--batch-size", 4, "--quiet", "--no-fid",
             "--lpips-vgg", lpips_files[0], "--lpips-heads", lpips_files[1])
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    # the same numbers computed here image by image from the files
    from PIL import Image

    from vqforge.api import load
    from vqforge.losses import LPIPS

    model = load(tiny_vqgan)
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), np.float32) / 127.5 - 1).permute(2, 0, 1)
                     for p in sorted(data.iterdir())])  # (6, 3, 16, 16)
    with torch.no_grad():
        rec = model(x).reconstruction.clamp(-1, 1)
        codes = model.encode_to_indices(x).unique()
        lp = LPIPS.from_pretrained(*lpips_files)(rec, x).flatten()  # (6,)
    psnr = 10 * torch.log10(4.0 / (rec - x).pow(2).flatten(1).mean(1))  # range 2 on [-1, 1]
    assert res["n_images"] == 6 and res["n_codes"] == 16 and res["codes_used"] == len(codes)
    assert res["codebook_usage"] == pytest.approx(len(codes) / 16)
    assert 1.0 <= res["perplexity"] <= res["codes_used"] + 1e-6
    assert res["psnr"] == pytest.approx(float(psnr.mean()), rel=1e-4)
    assert res["lpips"] == pytest.approx(float(lp.mean()), rel=1e-4) and res["lpips_skipped"] is None
    assert -1 <= res["ssim"] <= 1 and res["rfid"] is None and res["fid_skipped"] == "--no-fid"
    assert "PSNR" in r.stdout and "LPIPS" in r.stdout and "perplexity" in r.stdout


@needs_weights
def test_recon_fid_and_lpips_skipped_with_the_reason(tiny_vqgan, tmp_path):
    data = _images(tmp_path / "data", 6, 0)
    out = tmp_path / "recon.json"
    r = _cli("recon", "--model", tiny_vqgan, "--data", data, "--json", out, "--batch-size", 4, "--quiet",
             "--fid-method", "eigh", "--kid-subsets", 5, "--lpips-vgg", tmp_path / "missing_vgg16.pth")
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["rfid"] > 0 and res["kid_subset_size"] == 6 and res["kid_mean"] is not None
    assert res["lpips"] is None and str(tmp_path / "missing_vgg16.pth") in res["lpips_skipped"]
    assert "rFID" in r.stdout and "vqforge: LPIPS skipped" in r.stderr  # a notice, beside the table


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
    r = _cli("recon", "--model", tiny_vqgan, "--data", tmp_path / "empty", "--no-fid", "--json", tmp_path / "x.json")
    assert r.returncode == 2 and "no images found" in r.stderr and str(tmp_path / "empty") in r.stderr
    assert not (tmp_path / "x.json").exists()  # a failed run writes no results


def test_nll_json_matches_the_models_own_loss(tiny_vqgan, tmp_path):
    import math

    from vqforge.api import load
    from vqforge.data.tokens import write_tokens
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
    # independently: the GPT's log-probability of every image token after [class token, earlier tokens]
    model.eval()
    with torch.no_grad():
        seq = torch.cat([labels[:, None], z], 1)  # (10, 65): the class token (n_classes=3, ids 0..2), then z
        logp = torch.log_softmax(model.transformer(seq[:, :-1]).double(), -1)  # (10, 64, vocab)
        nats = -float(logp.gather(-1, z[:, :, None]).sum())  # position i predicts z[:, i]
    assert res["n_images"] == 10 and res["n_tokens"] == 640
    assert res["nats_per_token"] == pytest.approx(nats / 640, rel=1e-5)
    assert res["bits_per_token"] == pytest.approx(nats / 640 / math.log(2), rel=1e-5)
    assert res["bits_per_dim"] == pytest.approx(nats / math.log(2) / (10 * 3 * 16 * 16), rel=1e-5)
    assert "bits / dim" in r.stdout
    # the command is one library call: from Python, the same record
    from vqforge.evaluate.nll import evaluate_nll

    lib = evaluate_nll(model_dir, tokens, batch_size=4, progress=False)
    assert lib.keys() == res.keys() and (lib["split"], lib["rows"], lib["n_tokens"]) == (res["split"], res["rows"], 640)
    assert lib["nats_per_token"] == pytest.approx(res["nats_per_token"], rel=1e-6)
