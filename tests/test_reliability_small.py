"""The smaller faults of issue 23 (points 6 and 7), each reproduced as it was found and now one line.

* `sample --cfg inf` was accepted and wrote `"cfg": Infinity` (not JSON) beside a striped image;
* `encode --batch-size 0` was a traceback;
* a PNG passed as `--model` was called "pickled objects" with advice to pass `--trust-checkpoint`;
* `evaluate samples --inception evil.pt` recommended `--trust-checkpoint`, which that command does not accept;
* output folders were created 0700 whatever the umask;
* `train.learning_rate=-1` was silently replaced by the scaled base rate;
* checkpoint renames were not followed by an fsync of their folder;
* Lightning checkpoints whose `hyper_parameters` is an `AttributeDict` or an OmegaConf `DictConfig` were refused,
  and the refusal named `ModelCheckpoint` (already stood in for) instead of the class that blocked.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
import torch
from PIL import Image

from vqforge.api import save_model
from vqforge.cli import main
from vqforge.models.conditioning import ClassConfig
from vqforge.models.vqgan import VQGAN

sys.path.insert(0, str(Path(__file__).parent))
from test_sampling import tiny_net, tiny_vq  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_line(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("vqforge: error: "), (code, err)
    return err


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    save_model(tiny_net(ClassConfig(n_classes=5, null_class=True)), d / "class")
    save_model(VQGAN(tiny_vq()).eval(), d / "vq")
    return d


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_sample_refuses_a_guidance_scale_that_is_not_a_finite_number(models, tmp_path, capsys, value):
    code = main(["sample", "--model", str(models / "class"), "--cfg", value, "--num", "1", "--out",
                 str(tmp_path / "s"), "--quiet"])
    assert "cfg_scale must be a finite number >= 0" in _one_line(capsys, code)
    assert not (tmp_path / "s").exists()


def test_encode_refuses_a_batch_size_of_zero(models, tmp_path, capsys):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    code = main(["encode", "--model", str(models / "vq"), "--data", str(tmp_path), "--out", str(tmp_path / "tok"),
                 "--batch-size", "0", "--quiet"])
    assert "--batch-size must be >= 1" in _one_line(capsys, code)


def test_an_image_given_as_the_model_is_called_an_image_not_pickled_code(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    code = main(["reconstruct", "--model", str(tmp_path / "photo.png"), "--data", str(tmp_path / "photo.png"),
                 "--out", str(tmp_path / "r")])
    err = _one_line(capsys, code)
    assert str(tmp_path / "photo.png") in err and "a PNG image, not a checkpoint" in err
    assert "pickled" not in err and "--trust-checkpoint" not in err


class Evil:
    def __reduce__(self):
        return (os.mkdir, ("/nonexistent/never",))


def test_refusals_recommend_only_options_the_command_has(tmp_path, capsys):
    """evaluate samples has no --trust-checkpoint: its refusal of a pickled Inception file must not advise it;
    reconstruct has it, and its refusal does."""
    torch.save({"w": torch.zeros(1), "x": Evil()}, tmp_path / "evil.pt")
    (tmp_path / "s").mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "s" / f"{i}.png")
    code = main(["evaluate", "samples", "--samples", str(tmp_path / "s"), "--reference", str(tmp_path / "s"),
                 "--inception", str(tmp_path / "evil.pt")])
    err = _one_line(capsys, code)
    assert "pickled Python objects" in err and "--trust-checkpoint" not in err, err
    code = main(["reconstruct", "--model", str(tmp_path / "evil.pt"), "--data", str(tmp_path / "s"), "--out",
                 str(tmp_path / "r")])
    assert "--trust-checkpoint" in _one_line(capsys, code)


def test_output_folders_follow_the_umask(models, tmp_path):
    old = os.umask(0o022)
    try:
        Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
        assert main(["reconstruct", "--model", str(models / "vq"), "--data", str(tmp_path / "a.png"), "--out",
                     str(tmp_path / "r"), "--quiet"]) == 0
        save_model(VQGAN(tiny_vq()).eval(), tmp_path / "m")
    finally:
        os.umask(old)
    for d in (tmp_path / "r", tmp_path / "m"):
        assert (d.stat().st_mode & 0o777) == 0o755, (d, oct(d.stat().st_mode))  # was 0700 (mkdtemp's)


@pytest.mark.parametrize("value", ["-1", "-1e-3"])
def test_a_negative_learning_rate_is_refused_not_replaced(tmp_path, capsys, value):
    root = Path(__file__).resolve().parents[1]
    code = main(["train", "vqgan", "--config", str(root / "configs" / "vqgan_tiny.yaml"), "--data",
                 str(root / "assets" / "photos"), "--out", str(tmp_path / "run"), "--quiet",
                 f"train.learning_rate={value}"])
    assert "train.learning_rate must be a finite number >= 0" in _one_line(capsys, code)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_checkpoint_renames_are_followed_by_an_fsync_of_the_folder(tmp_path, monkeypatch):
    import vqforge.io as vio
    from vqforge.train import checkpoint as ck

    synced = []
    real = vio.fsync_dir

    def record(path):
        synced.append(Path(path))
        real(path)

    monkeypatch.setattr(vio, "fsync_dir", record)
    monkeypatch.setattr(ck, "fsync_dir", record)
    run = ck.RunDir(tmp_path / "run")
    ckpt = ck.Checkpoint(kind="vqgan", trainer="vqgan", model_config={}, model={"w": torch.zeros(2)}, step=1,
                         train_config={})
    run.save(ckpt, keep=True, best=True)
    run.keep_good(run.last)
    names = {p.name for p in run.checkpoint_dir.iterdir()}
    assert {"last.pt", "best.pt", "step_0000001.pt", "last_good.pt"} <= names
    assert synced.count(run.checkpoint_dir) >= 4  # after last.pt's rename and each second name


# ------------------------------------------------------------------------------------------ Lightning
def _fake_modules(names: list[str]) -> dict[str, types.ModuleType]:
    mods = {}
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            n = ".".join(parts[:i])
            if n not in mods:
                mods[n] = types.ModuleType(n)
                if i > 1:
                    setattr(mods[".".join(parts[:i - 1])], parts[i - 1], mods[n])
    return mods


def _define(mods, module: str, name: str, bases=(object,), **ns):
    cls = type(name, bases, ns)
    cls.__module__, cls.__qualname__ = module, name
    setattr(mods[module], name, cls)
    return cls


def _save_with(path: Path, mods: dict, make) -> None:
    """torch.save what ``make()`` builds while the fake Lightning / OmegaConf modules are importable (the
    loading process never has them: it must read the file without them)."""
    assert not any(n in sys.modules for n in mods)
    sys.modules.update(mods)
    try:
        torch.save(make(), path)
    finally:
        for n in mods:
            sys.modules.pop(n, None)


def _lightning_ckpt(hp, callbacks_cls=None, evil=None) -> dict:
    out = {"epoch": 1, "global_step": 10, "state_dict": {"encoder.w": torch.ones(2)}, "hyper_parameters": hp}
    if callbacks_cls is not None:
        out["callbacks"] = {callbacks_cls: {"best_model_score": torch.tensor(0.5)}}
    if evil is not None:
        out["extra"] = evil
    return out


def test_lightning_attributedict_and_omegaconf_dictconfig_load_with_inert_stand_ins(tmp_path):
    from vqforge.compat.taming import read_lightning_state_dict

    mods = _fake_modules(["pytorch_lightning.utilities.parsing", "pytorch_lightning.callbacks.model_checkpoint",
                          "omegaconf.dictconfig", "omegaconf.nodes", "omegaconf.base"])
    attr = _define(mods, "pytorch_lightning.utilities.parsing", "AttributeDict", (dict,))
    ckcb = _define(mods, "pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
    meta = _define(mods, "omegaconf.base", "ContainerMetadata")
    node = _define(mods, "omegaconf.nodes", "AnyNode")

    def dictconfig_state(self):  # the shape of OmegaConf's pickled state: metadata, parent, nodes
        m = meta()
        m.__dict__.update(ref_type=__import__("typing").Any, object_type=dict, optional=True, key=None, flags={})
        n = node()
        n.__dict__.update(_val=256, _metadata=None, _parent=None)
        return {"_metadata": m, "_parent": None, "_content": {"embed_dim": n}, "_flags_cache": None}

    dictconfig = _define(mods, "omegaconf.dictconfig", "DictConfig", __getstate__=dictconfig_state)

    def with_attributedict():
        hp = attr()
        hp.update(embed_dim=256, ddconfig={"ch": 128}, lossconfig=attr(target="x"))
        return _lightning_ckpt(hp, ckcb)

    _save_with(tmp_path / "ad.ckpt", mods, with_attributedict)
    _save_with(tmp_path / "dc.ckpt", mods, lambda: _lightning_ckpt(dictconfig(), ckcb))
    for name in ("ad.ckpt", "dc.ckpt"):
        sd = read_lightning_state_dict(tmp_path / name)
        assert list(sd) == ["encoder.w"] and torch.equal(sd["encoder.w"], torch.ones(2)), name


def test_the_refusal_names_the_class_that_blocked_not_one_already_stood_in_for(tmp_path):
    from vqforge.compat.taming import read_lightning_state_dict
    from vqforge.io import VQForgeError

    mods = _fake_modules(["pytorch_lightning.utilities.parsing", "pytorch_lightning.callbacks.model_checkpoint",
                          "someones.plugin"])
    attr = _define(mods, "pytorch_lightning.utilities.parsing", "AttributeDict", (dict,))
    ckcb = _define(mods, "pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
    gadget = _define(mods, "someones.plugin", "Gadget")
    _save_with(tmp_path / "x.ckpt", mods, lambda: _lightning_ckpt(attr(a=1), ckcb, gadget()))
    with pytest.raises(VQForgeError) as e:
        read_lightning_state_dict(tmp_path / "x.ckpt")
    msg = str(e.value)
    assert "someones.plugin.Gadget" in msg and "ModelCheckpoint" not in msg and "AttributeDict" not in msg, msg
    assert "--trust-checkpoint" in msg
    proof = tmp_path / "ran"  # a reduce that would make this folder if anything in the file were executed
    _save_with(tmp_path / "y.ckpt", mods, lambda: _lightning_ckpt(attr(a=1), None, MakeDir(proof)))
    with pytest.raises(VQForgeError, match="mkdir"):
        read_lightning_state_dict(tmp_path / "y.ckpt")
    assert not proof.exists()


class MakeDir:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))
