"""``hf://ORG/NAME[@REVISION]``: vqforge model directories on the Hugging Face Hub, and ``vqforge push``.

A Hub repository holds a vqforge model directory as it is on disk (``model.yaml`` + ``model.safetensors``)
and a model card (``README.md``). Loading goes through ``huggingface_hub`` (the optional extra
``pip install 'vqforge[hub]'``) and its cache (``$HF_HOME``, shared with every other library), and fetches only
those files: safetensors only, never a pickle from the network. Offline (``HF_HUB_OFFLINE=1`` or
``VQFORGE_OFFLINE=1``) it reads the cache alone.

Pushing (:func:`stage_push`, :func:`push`) uploads a model directory, or the model of a training run written
as one, with a card generated from what the run recorded (what it is, data, steps, metrics).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from ..io import VQForgeError, read_yaml, write_text
from ..modeldir import MODEL_WEIGHTS, MODEL_YAML, ModelMeta, is_model_dir, read_model_meta
from .home import offline

PREFIX = "hf://"
#: the files a vqforge model directory on the Hub consists of (nothing else is downloaded)
MODEL_FILES = (MODEL_YAML, MODEL_WEIGHTS)
CARD = "README.md"
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
INSTALL = "pip install 'vqforge[hub]' (or pip install huggingface_hub)"


@dataclass(frozen=True)
class HubRef:
    """A parsed ``hf://ORG/NAME[@REVISION]``."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{PREFIX}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


def parse(spec: str) -> HubRef:
    """``hf://ORG/NAME[@REVISION]`` -> :class:`HubRef` (a one-line error for anything else)."""
    if not spec.startswith(PREFIX):
        raise VQForgeError(f"{spec}: not a Hub address (hf://ORG/NAME[@REVISION])")
    rest = spec[len(PREFIX):]
    repo, _, revision = rest.partition("@")
    if not _REPO.match(repo) or (revision == "" and "@" in rest):
        raise VQForgeError(f"{spec}: not a Hub address; write hf://ORG/NAME or hf://ORG/NAME@REVISION")
    return HubRef(repo, revision or None)


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise VQForgeError(f"hf:// models need the huggingface_hub package: {INSTALL}") from None
    return huggingface_hub


def snapshot(spec: str) -> Path:
    """The local folder of the model directory ``spec`` in the Hub cache, downloading what is missing (only
    ``model.yaml``, ``*.safetensors`` and the card) unless offline."""
    ref = parse(spec)
    hub = _hub()
    from huggingface_hub import errors

    local_only = offline()
    try:
        folder = Path(hub.snapshot_download(ref.repo_id, revision=ref.revision, local_files_only=local_only,
                                            allow_patterns=[*MODEL_FILES, "*.safetensors", CARD],
                                            library_name="vqforge"))
    except errors.RepositoryNotFoundError:
        raise VQForgeError(f"{ref}: no such model repository on the Hub (or it is private: `hf auth login`)") from None
    except errors.RevisionNotFoundError:
        raise VQForgeError(f"{ref}: the repository has no revision {ref.revision!r}") from None
    except errors.LocalEntryNotFoundError:
        why = "vqforge is offline (HF_HUB_OFFLINE / VQFORGE_OFFLINE)" if local_only else "the Hub cannot be reached"
        raise VQForgeError(f"{ref}: not in the Hugging Face cache and {why}: download it where the network is "
                           f"(`hf download {ref.repo_id}" + (f" --revision {ref.revision}" if ref.revision else "")
                           + "`) and copy the cache folder ($HF_HOME/hub) here") from None
    except (errors.HfHubHTTPError, OSError, ValueError) as e:
        raise VQForgeError(f"{ref}: cannot fetch from the Hub ({str(e).splitlines()[0] if str(e) else e!r})") from None
    missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
    if missing:
        raise VQForgeError(f"{ref}: not a vqforge model directory (no {', '.join(missing)}; vqforge loads "
                           f"safetensors model directories only, never pickled weights)")
    return folder


# ------------------------------------------------------------------------------------------------- push
def run_facts(run: Path) -> dict[str, Any]:
    """What a training run recorded that belongs on a model card: trainer, data, steps, last validation metrics."""
    facts: dict[str, Any] = {}
    config = run / "config.yaml"
    if config.is_file():
        try:
            cfg = read_yaml(config) or {}
        except VQForgeError:
            cfg = {}
        train = cfg.get("train", {}) if isinstance(cfg, dict) else {}
        if isinstance(train, dict):
            facts.update({k: train[k] for k in ("data", "image_size", "batch_size", "max_steps") if k in train})
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        last: dict[str, float] = {}
        step = None
        for line in metrics.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            step = row.get("step", step)
            last.update({k: v for k, v in row.items() if k.startswith("val") and isinstance(v, (int, float))})
        if step is not None:
            facts["steps"] = int(step)
        if last:
            facts["metrics"] = {k: round(float(v), 5) for k, v in sorted(last.items())}
    return facts


def model_card(ref: HubRef, meta: ModelMeta, facts: dict[str, Any]) -> str:
    """The Hub model card (``README.md``): YAML front matter for the Hub, then what the model is and how to use it."""
    extra, kind = meta.card, meta.kind
    summary = extra.get("summary") or f"a vqforge {kind}"
    front = {"library_name": "vqforge", "tags": ["vqforge", "taming-transformers", "vqgan", kind],
             "pipeline_tag": "unconditional-image-generation" if kind == "transformer" else "image-to-image"}
    data = facts.get("data") or extra.get("trained_on")
    steps = facts.get("steps") or extra.get("steps")
    metrics = facts.get("metrics") or extra.get("metrics")
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {ref.repo_id.split('/')[-1]}", "",
             f"{summary[0].upper() + summary[1:]} ({kind}), in [vqforge](https://pypi.org/project/vqforge/)'s model "
             f"directory format: `model.yaml` (the typed config) and `model.safetensors` (the weights).", ""]
    facts_rows = [("kind", kind), ("trained on", data), ("steps", steps),
                  ("source", extra.get("source")), ("original", extra.get("page"))]
    lines += ["| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in facts_rows if v not in (None, "")]
    if isinstance(metrics, dict) and metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in metrics.items()]
    verb = "sample" if kind == "transformer" else "reconstruct"
    extra_args = "--num 8 --out samples/" if kind == "transformer" else "--data photos/ --out recon/"
    lines += ["", "## Use", "", "```bash", "pip install 'vqforge[hub]'", f"vqforge {verb} --model {ref} {extra_args}",
              "```", "", "```python", "import vqforge", "", f'model = vqforge.load("{ref}")', "```", ""]
    return "\n".join(lines)


def stage_push(src: Path, out: Path, spec: str, export: Callable[[Path, Path], Path]) -> list[Path]:
    """Write into ``out`` exactly what :func:`push` uploads for ``src`` (a model directory, or a run directory /
    checkpoint that ``export`` writes as one: :func:`vqforge.api.export_model`) and its card. Returns the files."""
    ref = parse(spec)
    if ref.revision:
        raise VQForgeError(f"{spec}: push to hf://ORG/NAME (a branch is chosen with --revision)")
    src = Path(src)
    if is_model_dir(src):
        for name in MODEL_FILES:
            if not (src / name).is_file():
                raise VQForgeError(f"{src}: a model directory without {name}")
            shutil.copyfile(src / name, out / name)
    else:
        export(src, out)
    meta = read_model_meta(out)
    run = src if src.is_dir() else src.parent.parent  # RUN/checkpoints/last.pt -> RUN
    write_text(out / CARD, model_card(ref, meta, run_facts(run) if not is_model_dir(src) else {}))
    return sorted(out.iterdir())


def push(staged: Path, spec: str, private: bool = False, revision: str | None = None,
         token: str | None = None) -> str:
    """Upload the folder :func:`stage_push` wrote to ``hf://ORG/NAME`` (creating the repository); the URL."""
    ref = parse(spec)
    hub = _hub()
    if offline():
        raise VQForgeError(f"{ref}: cannot push while offline (HF_HUB_OFFLINE / VQFORGE_OFFLINE); "
                           f"`vqforge push --dry-run` shows what would be uploaded")
    api = hub.HfApi(token=token)
    try:
        api.create_repo(ref.repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=ref.repo_id, folder_path=str(staged), revision=revision,
                                 commit_message="vqforge push")
    except Exception as e:  # noqa: BLE001 - the Hub's errors, as one line
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise VQForgeError(f"{ref}: push failed ({first}; log in with `hf auth login` or pass --token)") from None
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{ref.repo_id}")
