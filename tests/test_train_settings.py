"""One vocabulary and one console for every trainer: older names (config files, overrides, checkpoints of
every kind) read with a notice naming the new key, the same summary shape and --json for each trainer,
held-out validation with best.pt and a warning when validation keeps getting worse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import vqforge
from vqforge.cli import main
from vqforge.data.tokens import write_tokens
from vqforge.io import load_torch, save_torch

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "assets" / "photos"
MAPS = ROOT / "tests" / "fixtures" / "sflckr_seg"
VQ = ROOT / "tests" / "fixtures" / "fashion_vqgan"  # 16 px, f4: 4 x 4 tokens of 64 codes

pytestmark = pytest.mark.usefixtures("one_thread")

OLD_VQGAN = """
model:
  ddconfig: {ch: 32, out_ch: 3, ch_mult: [1, 2], num_res_blocks: 1, attn_resolutions: [], in_channels: 3,
             resolution: 16, z_channels: 32}
  quantizer: {kind: l2, n_embed: 256, embed_dim: 32, codebook_dim: 8}
loss: {disc_start: 0, perceptual: none, disc_num_layers: 2, disc_ndf: 32}
data: {size: 16, batch_size: 4, workers: 0, val_fraction: 0.2}
optim: {lr: null, base_lr: 1.0e-4, accumulation: 2}
schedule: {max_steps: 7, image_every: 0, ckpt_every: 3, val_every: 0}
ema: {enabled: true, decay: 0.9}
seed: 5
bf16: false
"""


def tokens(path: Path, n: int, seed: int, pattern: bool = True) -> Path:
    """A token dataset for the 4 x 4 fashion VQGAN: each row counts up by a class-specific stride (learnable),
    or uniform noise (``pattern=False``: nothing to learn, only to memorise)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    if pattern:
        z = (rng.integers(0, 64, (n, 1)) + np.arange(16)[None] * (labels[:, None] + 1)) % 64
    else:
        z = rng.integers(0, 64, (n, 16))
    return write_tokens(path, z, (4, 4), 64, (16, 16), labels=labels, label_names=["a", "b", "c"])


def test_old_names_in_a_config_file_and_overrides_are_read_with_a_notice(tmp_path, capsys):
    from vqforge.train.vqgan import load_config

    (tmp_path / "old.yaml").write_text(OLD_VQGAN)
    cfg = load_config(tmp_path / "old.yaml", ["schedule.max_steps=9", "data.batch_size=2", "cpu_bf16=true"])
    t = cfg.train
    assert (t.image_size, t.batch_size, t.accumulation, t.max_steps, t.checkpoint_every) == (16, 2, 2, 9, 3)
    assert (t.learning_rate, t.base_learning_rate, t.ema_decay, t.seed, t.preview_every) == (0.0, 1e-4, 0.9, 5, 0)
    assert t.precision == "auto"  # bf16: false was fp32; the override cpu_bf16=true then asks for native bf16
    err = capsys.readouterr().err
    assert "data.size is now train.image_size" in err and "schedule.ckpt_every is now train.checkpoint_every" in err
    assert "bf16/cpu_bf16 are now train.precision (auto|bf16|fp32); read as fp32" in err
    assert "ema.enabled/ema.decay are now train.ema_decay (0 = off); read as 0.9" in err
    assert "schedule.max_steps is now train.max_steps" in err
    assert "override cpu_bf16 is now train.precision; read as auto" in err
    assert load_config(tmp_path / "old.yaml", ["bf16=false"]).train.precision == "fp32"
    with pytest.raises(Exception, match="train.nope"):
        load_config(tmp_path / "old.yaml", ["train.nope=1"])


def _old_layout(run: Path, rewrite) -> None:
    """Rewrite a run's last.pt into the layout today's trainers wrote before the one checkpoint record."""
    ckpt = load_torch(run / "checkpoints" / "last.pt")
    del ckpt["trainer"]
    rewrite(ckpt)
    save_torch(run / "checkpoints" / "last.pt", ckpt)


def test_old_transformer_and_segmentation_checkpoints_resume(tmp_path, capsys):
    from vqforge.train.condition import load_config as seg_config, train_condition
    from vqforge.train.transformer import load_config, train_transformer

    data = tokens(tmp_path / "tok", 40, 0)
    cfg = load_config(ROOT / "configs" / "transformer_tiny_class.yaml",
                          ["model.cond.n_classes=3", "train.batch_size=8", "train.val_every=0", "train.precision=fp32"])
    train_transformer(cfg, str(data), tmp_path / "t", first_stage=str(VQ), max_steps=2, quiet=True)

    def old_transformer(ckpt):  # train_config held only the train section, with the older names
        t = dict(ckpt["train_config"]["train"])
        del t["data"], t["val_data"], t["precision"]
        t.update(accumulate=t.pop("accumulation"), sample_every=t.pop("preview_every"), bf16=False, cpu_bf16=False)
        ckpt["train_config"] = t

    _old_layout(tmp_path / "t", old_transformer)
    capsys.readouterr()
    r = train_transformer(None, None, tmp_path / "t", resume=True, max_steps=4, quiet=True)
    assert r.step == 4 and vqforge.load(tmp_path / "t").mode == "class"
    err = capsys.readouterr().err
    assert "train.accumulate is now train.accumulation" in err and "train.precision (auto|bf16|fp32); read as fp32" in err

    seg = seg_config(ROOT / "configs" / "seg_tiny.yaml", ["train.val_every=0", "train.preview_every=0"])
    train_condition(seg, tmp_path / "s", settings={"data": str(MAPS)}, max_steps=2, quiet=True)

    def old_segmentation(ckpt):  # kind vqgan + n_labels; train.size / train.image_every; no mode
        c = ckpt["train_config"]
        del c["mode"], c["train"]["data"], c["train"]["val_data"]
        c["train"].update(size=c["train"].pop("image_size"), image_every=c["train"].pop("preview_every"))
        ckpt["n_labels"] = 182

    _old_layout(tmp_path / "s", old_segmentation)
    r = train_condition(None, tmp_path / "s", resume=True, settings={"data": str(MAPS)}, max_steps=3, quiet=True)
    assert r.step == 3 and "train.size is now train.image_size" in capsys.readouterr().err
    assert load_torch(tmp_path / "s" / "checkpoints" / "last.pt")["trainer"] == "condition"


def _run(capsys, *argv: str) -> list[str]:
    assert main(list(argv)) == 0
    return capsys.readouterr().out.strip().splitlines()


def test_every_trainer_prints_the_same_summary_and_json(tmp_path, capsys):
    data = tokens(tmp_path / "tok", 40, 0)
    runs = {
        "vqgan": ["--config", str(ROOT / "configs" / "vqgan_tiny.yaml"), "--data", str(PHOTOS),
                  "train.image_size=16", "model.ddconfig.resolution=16", "train.batch_size=4"],
        "transformer": ["--config", str(ROOT / "configs" / "transformer_tiny_class.yaml"), "--data", str(data),
                        "--first-stage", str(VQ), "model.cond.n_classes=3", "train.batch_size=8"],
        "condition": ["--config", str(ROOT / "configs" / "seg_tiny.yaml"), "--data", str(MAPS)],
    }
    for stage, args in runs.items():
        out = _run(capsys, "train", stage, *args, "--out", str(tmp_path / stage), "--max-steps", "2", "--quiet",
                   "--device", "cpu", "--seed", "3", "--precision", "fp32")
        assert out[0] == "vqforge: trained to step 2" or out[0].startswith("vqforge: trained to step 2 in "), out
        assert out[1].startswith("  validation: ") and any(line.startswith("  run directory: ") for line in out)
        nxt = [line.strip() for line in out if line.strip().startswith(("next:", "vqforge "))]
        assert f"vqforge train {stage} --resume {tmp_path / stage} --max-steps 4" in " ".join(nxt)
        saved = load_torch(tmp_path / stage / "checkpoints" / "last.pt")["train_config"]["train"]
        assert (saved["seed"], saved["device"], saved["precision"]) == (3, "cpu", "fp32")
        record = json.loads(_run(capsys, "train", stage, "--resume", str(tmp_path / stage), "--max-steps", "3",
                                 "--quiet", "--json")[-1])
        assert record["step"] == 3 and record["run_dir"] == str(tmp_path / stage) and record["stopped_by"] == ""
    assert main(["train", "vqgan", "--resume", str(tmp_path / "vqgan"), "--no-progress"]) == 0  # old spelling
    assert "--no-progress is now --quiet" in capsys.readouterr().err


@pytest.mark.slow
def test_held_out_validation_keeps_the_best_checkpoint_and_warns_when_it_rises(tmp_path, capsys):
    """A transformer memorising 16 rows of noise: validation loss on other rows rises while training loss falls."""
    from vqforge.train.transformer import load_config, train_transformer

    train_tok, val_tok = tokens(tmp_path / "train", 16, 1, pattern=False), tokens(tmp_path / "val", 64, 2, False)
    cfg = load_config(ROOT / "configs" / "transformer_tiny_uncond.yaml",
                          ["train.batch_size=16", "train.learning_rate=3e-3", "train.warmup_steps=0",
                           "train.val_every=5", "train.val_batches=4", "train.preview_every=0", "train.patience=3",
                           "train.checkpoint_every=0", "train.precision=fp32", "train.log_every=5", "model.gpt.n_embd=64"])
    result = train_transformer(cfg, str(train_tok), tmp_path / "run", first_stage=str(VQ), max_steps=60,
                   settings={"val_data": str(val_tok)})
    err = capsys.readouterr().err
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = {m["step"]: m["val/loss"] for m in logged if "val/loss" in m}
    train_loss = [m["train/loss"] for m in logged if "train/loss" in m]
    assert sorted(val) == list(range(0, 61, 5))  # printed and logged as training goes
    assert "step 5: validation loss" in err
    assert train_loss[-1] < train_loss[0] - 1.0 and val[60] > min(val.values()) + 0.2  # it overfits
    assert "val/loss got worse for 3 evaluations in a row" in err and "overfitting" in err
    best_step = min((s for s in val if s > 0), key=lambda s: val[s])
    best = load_torch(tmp_path / "run" / "checkpoints" / "best.pt")
    assert result.best_step == best["step"] == best_step < 60
    assert best["best"]["value"] == pytest.approx(val[best_step]) and best["best"]["metric"] == "val/loss"
    # best.pt is a complete checkpoint of that step: its weights give that validation loss
    model = vqforge.load(tmp_path / "run" / "checkpoints" / "best.pt")
    from vqforge.data.tokens import TokenDataset

    z = torch.stack([TokenDataset(val_tok)[i]["tokens"] for i in range(64)])
    with torch.no_grad():
        logits, target = model(z, model.encode_to_c(z), pre_tokenized=True)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    assert float(loss) == pytest.approx(val[best_step], abs=1e-4)


def test_time_limit_stops_with_a_checkpoint_and_says_how_to_continue(tmp_path, capsys):
    out = _run(capsys, "train", "condition", "--config", str(ROOT / "configs" / "seg_tiny.yaml"), "--data", str(MAPS),
               "--out", str(tmp_path / "s"), "--time-limit", "0.0001", "--quiet", "train.val_every=0")
    assert out[0].startswith(f"vqforge: time limit reached; saved {tmp_path / 's' / 'checkpoints' / 'last.pt'} at step 1")
    assert any(f"vqforge train condition --resume {tmp_path / 's'}" in line for line in out)
    assert load_torch(tmp_path / "s" / "checkpoints" / "last.pt")["step"] == 1
