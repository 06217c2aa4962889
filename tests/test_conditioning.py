"""Conditioning modes as objects: every mode through one interface, every sampler feature in every mode.

Sizes default to the trained size; sliding windows take condition grids at an integer ratio to the image grid;
classifier-free guidance and completion work in spatial modes; old flat condition records still load; settings
that follow from the first stage and the data are derived, and wrong explicit values are named as the command
line spells them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import vqforge
from vqforge.cli import main
from vqforge.config import ConfigError, from_dict
from vqforge.models.conditioning import (MODES, ClassConfig, ConditionConfig, CoordConfig, DataFacts, DepthConfig,
                                         EdgesConfig, LowresConfig, SegmentationConfig, TokensConfig,
                                         UnconditionalConfig)
from vqforge.models.gpt import GPTConfig
from vqforge.models.transformer import Net2NetTransformer, TransformerConfig, derive_config
from vqforge.models.vqgan import AutoencoderConfig, VQGANConfig
from vqforge.quantizers import VQConfig
from vqforge.sampling import processors as P
from vqforge.sampling.generate import EXACT, DecodeSession, sample_tokens
from vqforge.sampling.pipeline import complete_image, condition_tokens, layout, sample_images
from vqforge.sampling.sliding import WindowedCondition, sample_sliding, window_offset

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO / "tests" / "fixtures" / "sflckr_photos"

pytestmark = pytest.mark.usefixtures("one_thread")


def vq(in_ch=3, n_embed=32, ch_mult=(1, 2, 2), resolution=16) -> VQGANConfig:
    """A tiny VQGAN config: f4 with ch_mult (1, 2, 2), f8 with (1, 2, 2, 2)."""
    dd = AutoencoderConfig(ch=32, ch_mult=ch_mult, num_res_blocks=1, attn_resolutions=(), in_channels=in_ch,
                           out_ch=in_ch, resolution=resolution, z_channels=8)
    return VQGANConfig(ddconfig=dd, quantizer=VQConfig(n_embed=n_embed, embed_dim=8))


def net(cond, first: VQGANConfig | None = None, image_size=0, vocab=0, block=0, seed=0) -> Net2NetTransformer:
    """A tiny transformer with sharp logits (greedy choices well separated); vocab/block 0 = derived."""
    torch.manual_seed(seed)
    gpt = GPTConfig(vocab_size=vocab, block_size=block, n_layer=2, n_head=2, n_embd=32)
    m = Net2NetTransformer(TransformerConfig(gpt=gpt, first_stage=first or vq(), cond=cond, image_size=image_size))
    with torch.no_grad():
        m.transformer.head.weight.mul_(20)
        m.transformer.tok_emb.weight.mul_(20)
    return m.eval()


def rule_start(i: int, n: int, w: int, align: int = 1) -> int:
    """The window start of index i as the original's rule places it, moved back to a multiple of ``align``."""
    if n <= w:
        return 0
    local = i if i <= w / 2 else (w - (n - i) if n - i < w / 2 else w // 2)
    start = i - local
    return start - start % align


GREEDY = P.SamplingSettings(greedy=True)


# ---------------------------------------------------------------------------------------- trained size
def test_sampling_defaults_to_the_size_the_transformer_was_trained_at(tmp_path):
    """A transformer trained at another size than its first stage's ``resolution`` samples at its trained size
    and window by default (the first stage's resolution gave the wrong window, or "exceeds block_size")."""
    up = net(UnconditionalConfig(), first=vq(resolution=16), image_size=32)  # trained on 8x8 tokens
    assert up.trained_hw == (32, 32) and up.config.gpt.block_size == 64  # derived: 1 + 64 - 1
    lay = layout(up)
    assert lay.image_hw == (32, 32) and lay.grid_hw == (8, 8) and lay.window_hw == (8, 8) and not lay.sliding
    assert layout(up, (64, 64)).window_hw == (8, 8)  # larger sizes slide the trained window

    down = net(UnconditionalConfig(), first=vq(resolution=32), image_size=16)  # trained on 4x4 tokens
    assert down.config.gpt.block_size == 16
    lay = layout(down)
    assert lay.image_hw == (16, 16) and lay.window_hw == (4, 4)
    vqforge.save_model(down, tmp_path / "m")
    assert main(["sample", "--model", str(tmp_path / "m"), "--num", "1", "--out", str(tmp_path / "s")]) == 0
    assert Image.open(tmp_path / "s" / "00000.png").size == (16, 16)
    assert json.loads((tmp_path / "s" / "settings.json").read_text())["window"] == [4, 4]


def test_training_records_its_size_and_derives_settings(tmp_path):
    """Trained at 32 px under a first stage made for 16 px, with vocab_size, block_size and n_classes left 0: the
    saved model has them derived (and the class names), and `vqforge sample` defaults to 32 px."""
    from vqforge.models.vqgan import VQGAN
    from vqforge.train.transformer import TransformerRunConfig, TransformerSettings, train_transformer

    torch.manual_seed(0)
    vqforge.save_model(VQGAN(vq(resolution=16)), tmp_path / "vq")
    cfg = TransformerRunConfig(
        model=TransformerConfig(gpt=GPTConfig(vocab_size=0, block_size=0, n_layer=1, n_head=2, n_embd=32),
                                cond=ClassConfig(n_classes=0, dropout=0.1)),
        train=TransformerSettings(batch_size=2, learning_rate=1e-3, image_size=32, val_fraction=0.25,
                                     val_every=0, preview_every=0, checkpoint_every=0))
    train_transformer(cfg, str(PHOTOS), tmp_path / "run", first_stage=str(tmp_path / "vq"), max_steps=1, quiet=True)
    m = vqforge.load(tmp_path / "run")
    assert m.trained_hw == (32, 32) and m.config.image_size == 32
    assert m.config.cond.n_classes == 3 and m.config.cond.names == ("alaska_lakes", "australia", "black_forest")
    assert m.config.gpt.vocab_size == 32 and m.config.gpt.block_size == 64  # 32 codes > 3 + NULL; 1 + 64 - 1
    assert main(["sample", "--model", str(tmp_path / "run"), "--class", "australia", "--num", "1", "--out",
                 str(tmp_path / "s")]) == 0
    s = json.loads((tmp_path / "s" / "settings.json").read_text())
    assert s["size"] == [32, 32] and s["samples"][0]["class"] == 1 and s["samples"][0]["class_name"] == "australia"


def test_derived_settings_are_checked_and_every_problem_named_as_the_command_line_spells_it():
    cfg = TransformerConfig(gpt=GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=32),
                            first_stage=vq(), cond=ClassConfig(n_classes=0))
    facts = DataFacts(image_hw=(16, 16), label_names=("a", "b", "c"))
    with pytest.raises(ValueError) as e:
        derive_config(cfg, facts)
    msg = str(e.value)
    assert "model.gpt.vocab_size=16 is too small" in msg and "set model.gpt.vocab_size=32" in msg
    assert "need model.gpt.block_size >= 16" in msg and "set model.gpt.block_size=16" in msg  # both at once
    with pytest.raises(ValueError, match=r"the data has 3 classes, model\.cond\.n_classes=2: set model\.cond\."
                                         r"n_classes=3"):
        derive_config(TransformerConfig(gpt=GPTConfig(vocab_size=0, block_size=0), first_stage=vq(),
                                        cond=ClassConfig(n_classes=2)), facts)
    with pytest.raises(ValueError, match="class conditioning needs labels"):
        derive_config(TransformerConfig(first_stage=vq(), cond=ClassConfig()), DataFacts(image_hw=(16, 16)))
    seg = TransformerConfig(gpt=GPTConfig(vocab_size=0, block_size=0), first_stage=vq(),
                            cond=SegmentationConfig(cond_stage=vq(5, n_embed=48, ch_mult=(1, 2, 2, 2))))
    out = derive_config(seg, DataFacts(image_hw=(32, 32), pre_encoded=True, cond_mode="segmentation",
                                       cond_grid=(4, 4), cond_codes=48))
    assert out.gpt.vocab_size == 48 and out.gpt.block_size == 16 + 64 - 1 and out.image_size == 32
    with pytest.raises(ValueError, match="condition grid is 2x2, the model's for 32x32 px images is 4x4"):
        derive_config(seg, DataFacts(image_hw=(32, 32), pre_encoded=True, cond_mode="segmentation",
                                     cond_grid=(2, 2), cond_codes=48))
    with pytest.raises(ValueError, match="no condition tokens for segmentation"):
        derive_config(seg, DataFacts(image_hw=(32, 32), pre_encoded=True))
    with pytest.raises(ValueError, match="needs paired maps: pre-encode them"):
        derive_config(seg, DataFacts(image_hw=(32, 32)))


# ------------------------------------------------------------------------------------ configs and modes
FLAT = {"sos_token": 0, "n_classes": 0, "null_class": True, "class_dropout": 0.0, "cond_stage": None, "n_labels": 0,
        "downsample_cond_size": -1, "lowres_factor": 4, "coord_n_embed": 1024, "coord_down_factor": 16,
        "canny_sigma": 1.0, "canny_low": 0.1, "canny_high": 0.2}


@pytest.mark.parametrize("mode,changes,cls", [
    ("unconditional", {"sos_token": 7}, UnconditionalConfig),
    ("class", {"n_classes": 10, "class_dropout": 0.1}, ClassConfig),
    ("segmentation", {"n_labels": 5}, SegmentationConfig),
    ("depth", {"downsample_cond_size": 16}, DepthConfig),
    ("edges", {"canny_sigma": 2.0}, EdgesConfig),
    ("lowres", {"lowres_factor": 2}, LowresConfig),
    ("coord", {"coord_n_embed": 64}, CoordConfig),
    ("tokens", {}, TokensConfig),
])
def test_old_flat_records_convert_to_the_modes_config(mode, changes, cls, capsys):
    """What model directories and run directories written before modes were objects hold: every mode's keys."""
    cfg = from_dict(ConditionConfig, {"mode": mode, **FLAT, **changes}, where="model.cond")
    assert type(cfg) is cls and cfg.mode == mode
    for key, value in changes.items():
        assert getattr(cfg, "dropout" if key == "class_dropout" else key) == value
    err = capsys.readouterr().err
    assert ("model.cond.class_dropout is now model.cond.dropout" in err) == ("class_dropout" in changes)


def test_model_directories_with_old_flat_records_still_load(tmp_path):
    """A model directory as vqforge wrote it before modes were objects (a flat cond record) loads unchanged."""
    import yaml

    m = net(SegmentationConfig(n_labels=5, cond_stage=vq(5), downsample_cond_size=8))
    vqforge.save_model(m, tmp_path / "m")
    meta = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    stage = meta["config"]["cond"]["cond_stage"]
    meta["config"]["cond"] = {"mode": "segmentation", **FLAT, "n_labels": 5, "downsample_cond_size": 8,
                              "cond_stage": stage}
    (tmp_path / "m" / "model.yaml").write_text(yaml.safe_dump(meta))
    again = vqforge.load(tmp_path / "m")
    assert again.config == m.config and again.cond_hw((32, 32)) == (4, 4)
    for k, v in m.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_config_records_round_trip_and_reject_what_does_not_belong():
    from vqforge.config import apply_overrides, dump_yaml, load_yaml

    cfg = TransformerConfig(cond=SegmentationConfig(n_labels=5, cond_stage=vq(5), null_condition=True))
    again = from_dict(TransformerConfig, __import__("yaml").safe_load(dump_yaml(cfg)))
    assert again == cfg
    assert apply_overrides(cfg, ["cond.dropout=0.2"]).cond.dropout == 0.2
    with pytest.raises(ConfigError, match=r"n_clases: unknown key \(did you mean n_classes\?\)"):
        from_dict(ConditionConfig, {"mode": "class", "n_clases": 3})
    with pytest.raises(ConfigError, match=r"mode: 'colour' is not one of"):
        from_dict(ConditionConfig, {"mode": "colour"})
    for name in ("transformer_tiny_class", "transformer_tiny_seg", "transformer_drin", "transformer_faceshq"):
        from vqforge.train.transformer import TransformerRunConfig

        load_yaml(TransformerRunConfig, REPO / "configs" / f"{name}.yaml")


def test_nothing_outside_the_mode_files_branches_on_a_mode_name():
    names = "|".join(MODES)
    compare = re.compile(rf'(==|!=)\s*"({names})"|"({names})"\s*(==|!=)|\bin\s*[(\[{{][^)\]}}\n]*"({names})"')
    offenders = []
    for path in (REPO / "src" / "vqforge").rglob("*.py"):
        if "conditioning" in path.parts or path.name == "net2net.py":  # the modes; the original's names
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if compare.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


MODE_CONFIGS = {
    "unconditional": lambda: UnconditionalConfig(sos_token=3),
    "class": lambda: ClassConfig(n_classes=10),
    "segmentation": lambda: SegmentationConfig(n_labels=5, cond_stage=vq(5), null_condition=True),
    "depth": lambda: DepthConfig(cond_stage=vq(1, ch_mult=(1, 2)), downsample_cond_size=8),
    "edges": lambda: EdgesConfig(cond_stage=vq(1)),
    "lowres": lambda: LowresConfig(lowres_factor=2, cond_stage=vq(3, ch_mult=(1, 2))),
    "coord": lambda: CoordConfig(coord_n_embed=60, coord_down_factor=4),
    "tokens": lambda: TokensConfig(n_codes=20, n_tokens=5),
}


def mode_input(m: Net2NetTransformer, B: int, H: int, W: int) -> torch.Tensor:
    """A model input for m's mode, through its own raw-data path."""
    g = torch.Generator().manual_seed(1)
    raw = {"class": torch.tensor([1, 7, 2, 0][:B]), "segmentation": torch.randint(0, 5, (B, H, W), generator=g),
           "depth": torch.rand(B, 1, H, W, generator=g), "tokens": torch.randint(0, 20, (B, 5), generator=g)}
    return m.build_condition(images=torch.rand(B, 3, H, W, generator=g) * 2 - 1, raw=raw.get(m.mode))


@pytest.mark.parametrize("mode", list(MODE_CONFIGS))
def test_every_registered_mode_cached_decoding_equals_the_full_forward(mode):
    assert set(MODE_CONFIGS) == set(MODES)  # a new mode must be added here
    m = net(MODE_CONFIGS[mode]())
    B, H, W = 2, 16, 16
    c = m.encode_to_c(mode_input(m, B, H, W))
    assert c.shape == (B, m.n_cond_tokens((H, W))) and int(c.max()) < m.config.gpt.vocab_size
    z = torch.randint(0, m.n_image_codes, (B, 16))
    seq = torch.cat((c, z), 1)[:, :-1]
    with torch.inference_mode():
        full = m.transformer(seq)  # (B, T, V)
        dec = DecodeSession(m.transformer, B, seq.shape[1], EXACT)
        Tc = c.shape[1]
        err = (dec.prefill(c) - full[:, Tc - 1]).abs().max().item()
        for p in range(Tc, seq.shape[1]):
            err = max(err, (dec.step(seq[:, p:p + 1], p) - full[:, p]).abs().max().item())
    assert err < 1e-4, (mode, err)


# ------------------------------------------------------------------------------------------ sliding
def check_windows_by_hand(m, cond, z: torch.Tensor, W: int, k: int) -> int:
    """Every token of z (1, h, w) is the GPT's greedy choice in its window (starts aligned to k) with the condition
    window at the same relative place (k image tokens per condition token): a cut of the whole map's token grid
    ``cond`` (B, ch, cw), or for a WindowedCondition the stage's tokens of that window's crop of the input, encoded
    here; returns how many starts moved."""
    h, w = z.shape[1:]
    moved = 0
    for i in range(h):
        for j in range(w):
            i0, j0 = rule_start(i, h, W, k), rule_start(j, w, W, k)
            moved += (i0, j0) != (rule_start(i, h, W), rule_start(j, w, W))
            prefix = z[:, i0:i0 + W, j0:j0 + W].reshape(1, -1)[:, :(i - i0) * W + (j - j0)]
            if isinstance(cond, WindowedCondition):
                px = cond.inputs.shape[-2] // h  # input pixels per image token
                crop = cond.inputs[..., i0 * px:(i0 + W) * px, j0 * px:(j0 + W) * px]
                cwin = m.encode_to_c(crop)
            else:
                cwin = cond[:, i0 // k:(i0 + W) // k, j0 // k:(j0 + W) // k].reshape(1, -1)
            with torch.inference_mode():
                logits = m.transformer(torch.cat((cwin, prefix), 1))[:, -1, :m.n_image_codes]
            assert logits.argmax(-1).item() == z[0, i, j].item(), (i, j)
    return moved


@pytest.mark.parametrize("encoding", ["window", "whole"])
def test_sliding_with_a_condition_grid_half_the_image_grid(encoding):
    """An f8 segmentation stage under an f4 image stage: 2x2 condition tokens per trained 4x4 window."""
    m = net(SegmentationConfig(n_labels=5, cond_stage=vq(5, ch_mult=(1, 2, 2, 2))))
    assert m.cond_hw((16, 16)) == (2, 2) and m.config.gpt.block_size == 4 + 16 - 1
    lay = layout(m, (24, 32), cond_encoding=encoding)
    assert lay.sliding and lay.grid_hw == (6, 8) and lay.cond_hw == (3, 4) and lay.window_hw == (4, 4)
    labels = torch.randint(0, 5, (1, 24, 32), generator=torch.Generator().manual_seed(0))
    c, _ = condition_tokens(m, lay, 1, m.build_condition(raw=labels))
    assert c.shape == (1, 3, 4) and isinstance(c, WindowedCondition) == (encoding == "window")
    z = sample_sliding(m.transformer, c, lay.grid_hw, lay.window_hw, GREEDY, n_vocab=32, decoding=EXACT)
    fresh = sample_sliding(m.transformer, c, lay.grid_hw, lay.window_hw, GREEDY, n_vocab=32, reuse_cache=False,
                           decoding=EXACT)
    assert torch.equal(z, fresh)
    assert check_windows_by_hand(m, c, z, 4, 2) > 0  # some windows moved onto whole condition tokens
    with pytest.raises(ValueError, match="multiple of its stage's downsampling factor 8"):
        layout(m, (20, 32))  # 20 px has no whole f8 condition
    with pytest.raises(ValueError, match="use a --window that is a multiple of 2"):
        layout(m, (24, 32), window=(3, 3))


@pytest.mark.parametrize("encoding", ["window", "whole"])
def test_sliding_with_downsample_cond_size(encoding):
    """The original's downsample_cond_size (8 px at the trained 16 px) scales with the size asked for, so the
    condition grid stays at half the image grid and larger images slide (a window's crop is downsampled alike)."""
    m = net(DepthConfig(cond_stage=vq(1), downsample_cond_size=8))
    assert m.cond_hw((16, 16)) == (2, 2) and m.cond_hw((32, 48)) == (4, 6)
    depth = torch.rand(1, 1, 32, 48, generator=torch.Generator().manual_seed(0))
    c_in = m.build_condition(raw=depth)
    expect = m.cond_stage.encode_to_indices(F.interpolate(c_in, size=(16, 24))).flatten(1)
    assert torch.equal(m.encode_to_c(c_in), expect)
    lay = layout(m, (32, 48), cond_encoding=encoding)
    c, _ = condition_tokens(m, lay, 1, c_in)
    z = sample_sliding(m.transformer, c, lay.grid_hw, lay.window_hw, GREEDY, n_vocab=32, decoding=EXACT)
    check_windows_by_hand(m, c, z, 4, 2)


# ----------------------------------------------------------------------------- guidance, completion
def seg_with_null() -> Net2NetTransformer:
    return net(SegmentationConfig(n_labels=5, cond_stage=vq(5), null_condition=True, dropout=0.1))


def test_guidance_in_a_spatial_mode():
    m = seg_with_null()
    assert m.null_token == 32 and m.config.gpt.vocab_size == 33  # the stage's 32 codes + the null condition
    lay = layout(m, cfg_scale=2.0)
    labels = torch.randint(0, 5, (2, 16, 16), generator=torch.Generator().manual_seed(0))
    c, un = condition_tokens(m, lay, 2, m.build_condition(raw=labels), cfg_scale=2.0)
    assert un.shape == c.shape == (2, 4, 4) and (un == 32).all()
    s = 3.0
    z = sample_tokens(m.transformer, c.reshape(2, -1), 16, P.SamplingSettings(greedy=True, cfg_scale=s),
                      uncond=un.reshape(2, -1), n_vocab=32, decoding=EXACT)
    with torch.inference_mode():
        for n in range(16):
            lc = m.transformer(torch.cat((c.reshape(2, -1), z[:, :n]), 1))[:, -1, :32]
            lu = m.transformer(torch.cat((un.reshape(2, -1), z[:, :n]), 1))[:, -1, :32]
            assert torch.equal((lc + s * (lc - lu)).argmax(-1), z[:, n])
    plain = sample_tokens(m.transformer, c.reshape(2, -1), 16, GREEDY, n_vocab=32, decoding=EXACT)
    assert not torch.equal(plain, z)  # guidance changed the samples
    big = layout(m, (24, 28), cfg_scale=s)  # guided sliding windows: the null grid is windowed alike
    c, un = condition_tokens(m, big, 1, m.build_condition(raw=torch.randint(0, 5, (1, 24, 28))), cfg_scale=s)
    settings = P.SamplingSettings(greedy=True, cfg_scale=s)
    a = sample_sliding(m.transformer, c, big.grid_hw, big.window_hw, settings, uncond=un, n_vocab=32, decoding=EXACT)
    b = sample_sliding(m.transformer, c, big.grid_hw, big.window_hw, settings, uncond=un, n_vocab=32,
                       reuse_cache=False, decoding=EXACT)
    assert torch.equal(a, b)


def test_spatial_condition_dropout_in_training():
    """In training, a whole condition is replaced by the null condition with probability ``dropout``."""
    m = net(SegmentationConfig(n_labels=5, cond_stage=vq(5), null_condition=True, dropout=0.5))
    c = torch.randint(0, 32, (8, 16))
    z = torch.randint(0, 32, (8, 16))
    torch.manual_seed(3)
    train_logits, _ = m.train().forward_tokens(z, c)
    torch.manual_seed(3)
    dropped = torch.rand(8, 1) < 0.5
    assert 0 < int(dropped.sum()) < 8
    expect, _ = m.eval().forward_tokens(z, torch.where(dropped, torch.full_like(c, 32), c))
    assert torch.allclose(train_logits, expect, atol=1e-5)


def test_completion_in_a_spatial_mode():
    m = seg_with_null()
    lay = layout(m, (24, 28))  # larger than trained: completion slides too
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 24, 28, generator=g) * 2 - 1
    c, un = condition_tokens(m, lay, 1, m.build_condition(raw=torch.randint(0, 5, (1, 24, 28), generator=g)),
                             cfg_scale=2.0)
    mask = torch.zeros(24, 28, dtype=torch.bool)
    mask[8:20, 4:16] = True
    settings = P.SamplingSettings(top_k=5, cfg_scale=2.0)
    _, z, tmask = complete_image(m, x, mask, c, lay, settings, torch.Generator().manual_seed(1), un, decoding=EXACT)
    kept = m.encode_to_z(x).view(1, *lay.grid_hw)
    assert tmask[0].sum() == 3 * 3 and torch.equal(z[~tmask], kept[~tmask])
    assert not torch.equal(z[tmask], kept[tmask])
    # a masked suffix at the trained size is the greedy continuation after the condition and the kept prefix
    lay = layout(m)
    c, _ = condition_tokens(m, lay, 1, m.build_condition(raw=torch.randint(0, 5, (1, 16, 16), generator=g)))
    x = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[8:] = True
    _, z, _ = complete_image(m, x, mask, c, lay, GREEDY, decoding=EXACT)
    ref = m.encode_to_z(x)[:, :8]
    with torch.inference_mode():
        for _ in range(8):
            nxt = m.transformer(torch.cat((c.reshape(1, -1), ref), 1))[:, -1, :32].argmax(-1, keepdim=True)
            ref = torch.cat((ref, nxt), 1)
    assert torch.equal(z.view(1, -1), ref)


@pytest.fixture(scope="module")
def seg_dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp("seg_models")
    vqforge.save_model(seg_with_null(), d / "guided")
    vqforge.save_model(net(SegmentationConfig(n_labels=5, cond_stage=vq(5))), d / "plain")
    labels = np.random.default_rng(0).integers(0, 5, (32, 48)).astype(np.uint8)
    Image.fromarray(labels, mode="L").save(d / "map.png")
    img = (np.random.default_rng(1).random((40, 48, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(d / "photo.png")
    mask = np.zeros((40, 48), np.uint8)
    mask[20:, :] = 255
    Image.fromarray(mask).save(d / "mask.png")
    return d


def test_cli_guidance_and_completion_in_a_spatial_mode(seg_dirs, tmp_path, capsys):
    d = seg_dirs
    # a map of another size is resized to the trained size (16 px) unless --size is given
    assert main(["sample", "--model", str(d / "guided"), "--cond", str(d / "map.png"), "--cfg", "2", "--out",
                 str(tmp_path / "s")]) == 0
    assert Image.open(tmp_path / "s" / "00000.png").size == (16, 16)
    assert main(["sample", "--model", str(d / "guided"), "--cond", str(d / "map.png"), "--size", "32x48",
                 "--out", str(tmp_path / "big")]) == 0
    assert Image.open(tmp_path / "big" / "00000.png").size == (48, 32)
    # the image is resized and centre-cropped to the trained size, the mask alike
    assert main(["complete", "--model", str(d / "guided"), "--cond", str(d / "map.png"), "--cfg", "2", "--data",
                 str(d / "photo.png"), "--mask", str(d / "mask.png"), "--out", str(tmp_path / "c")]) == 0
    s = json.loads((tmp_path / "c" / "settings.json").read_text())
    assert s["size"] == [16, 16] and s["mode"] == "segmentation" and s["samples"][0]["cond"] == str(d / "map.png")
    capsys.readouterr()
    # a model without a null condition is refused before anything is sampled or written, with the fix named
    assert main(["sample", "--model", str(d / "plain"), "--cond", str(d / "map.png"), "--cfg", "2", "--out",
                 str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model.cond.null_condition=true" in err and not (tmp_path / "x").exists()


def test_encode_defaults_to_the_trained_size(tmp_path):
    from vqforge.data.tokens import TokenDataset
    from vqforge.models.vqgan import VQGAN

    torch.manual_seed(0)
    vqforge.save_model(VQGAN(vq(resolution=16)), tmp_path / "vq")
    assert main(["encode", "--model", str(tmp_path / "vq"), "--data", str(PHOTOS), "--out", str(tmp_path / "tok"),
                 "--quiet"]) == 0
    ds = TokenDataset(tmp_path / "tok")
    assert ds.meta["image_size"] == [16, 16] and ds.grid == (4, 4)


def test_sample_images_every_spatial_mode_at_twice_the_trained_size():
    """Each mode with a condition grid slides at 2x its trained size (lowres, edges, coord, depth included)."""
    for mode in ("segmentation", "depth", "edges", "lowres", "coord"):
        m = net(MODE_CONFIGS[mode]())
        lay = layout(m, (32, 32))
        assert lay.sliding and lay.cond_hw is not None, mode
        c, _ = condition_tokens(m, lay, 1, None if mode == "coord" else mode_input(m, 1, 32, 32))
        x, z = sample_images(m, lay, c, P.SamplingSettings(top_k=5), torch.Generator().manual_seed(0), decoding=EXACT)
        assert x.shape == (1, 3, 32, 32) and z.shape == (1, 8, 8), mode


def test_window_rule_unchanged_for_equal_grids():
    """The original's placement rule is kept where the condition grid equals the image grid (parity)."""
    for n in (5, 9, 16, 33):
        for i in range(n):
            assert rule_start(i, n, 4) == i - window_offset(i, n, 4)
