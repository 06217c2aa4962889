"""The config files that ship with vqforge (``vqforge/configs``; ``configs/`` in a checkout links to them), usable
by name wherever a command takes ``--config``: ``--config vqgan_cpu``, ``--config bundled/fashion_vqgan``."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs"


def presets() -> list[str]:
    """The names of the shipped configs (paths under ``vqforge/configs`` without ``.yaml``), sorted."""
    return sorted(p.relative_to(PRESETS_DIR).with_suffix("").as_posix() for p in PRESETS_DIR.rglob("*.yaml"))


def resolve_config(name_or_path: str | Path) -> Path:
    """The config file ``name_or_path`` names: an existing file as given, else a shipped config by name (with or
    without ``.yaml``). ConfigError naming the presets when it is neither."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.as_posix().removesuffix(".yaml")
    preset = PRESETS_DIR / f"{name}.yaml"
    if not path.is_absolute() and preset.is_file():
        return preset
    raise ConfigError(f"--config {name_or_path}: no such file, and not a config shipped with vqforge (by name: "
                      f"{', '.join(presets())})")
