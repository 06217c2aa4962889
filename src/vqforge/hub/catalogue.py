"""The original's released models, by name: ``vqforge pull NAME``, ``vqforge.load("taming/NAME")``.

One :class:`TamingModel` per model the original's README links (its "Overview of pretrained models" table and
its sections on running and training them). ``page`` is the link as the README gives it (a shared folder);
``config_url`` / ``checkpoint_url`` are direct links to the two files inside that folder (the project YAML
and ``last.ckpt``), where the folder's file links are known; an entry without them can still be used by
downloading the folder by hand (``vqforge pull`` says where to put the two files). ``size`` (bytes) and
``sha256`` of the checkpoint are filled in once known; until then the first download records them in
``$VQFORGE_HOME/checksums.json`` and every later download is checked against that record.

More entries (a mirror, a model of your own in the original's format) can be listed in
``$VQFORGE_HOME/catalogue.yaml``: a list of mappings with the same fields; an entry there replaces a packaged
entry of the same name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from urllib.parse import quote

from ..io import VQForgeError, read_yaml
from .home import vqforge_home

README = "https://github.com/CompVis/taming-transformers#overview-of-pretrained-models"


@dataclass(frozen=True)
class TamingModel:
    """One released model of the original."""

    name: str
    summary: str  # what it is, in a line
    page: str  # the link the original's README gives (a shared folder)
    run: str = ""  # the run folder's name in the original's logs/ (the README's download name)
    config_url: str | None = None  # the project YAML inside that folder
    checkpoint_url: str | None = None  # checkpoints/last.ckpt inside that folder
    size: int | None = None  # bytes of the checkpoint, once known
    sha256: str | None = None  # of the checkpoint, once known
    config_sha256: str | None = None

    @property
    def direct(self) -> bool:
        """Whether the two files can be downloaded without a person opening the folder."""
        return bool(self.config_url and self.checkpoint_url)


def _heibox(share: str, config: str, checkpoint: str) -> dict[str, str]:
    """Direct file links inside a heibox (Seafile) shared folder the README links."""
    base = f"https://heibox.uni-heidelberg.de/d/{share}/"
    files = f"{base}files/?p="
    return {"page": base, "config_url": f"{files}{quote('/' + config, safe='')}&dl=1",
            "checkpoint_url": f"{files}{quote('/' + checkpoint, safe='')}&dl=1"}


def _koofr(short: str, link: str, run: str) -> dict[str, str]:
    """Direct file links inside the koofr shared folder a README short link (k00.fr) opens."""
    stamp = run.split("_", 1)[0]
    base = f"https://app.koofr.net/content/links/{link}/files/get/"
    path = f"?path={quote(f'/{run}/', safe='')}"
    return {"page": f"https://k00.fr/{short}", "run": run,
            "config_url": f"{base}{stamp}-project.yaml{path}{quote(f'configs/{stamp}-project.yaml', safe='')}",
            "checkpoint_url": f"{base}last.ckpt{path}{quote('checkpoints/last.ckpt', safe='')}"}


_ENTRIES = [
    TamingModel("vqgan_imagenet_f16_1024", "VQGAN first stage, ImageNet, f=16, 1024 codes (reconstruction FID 7.94)",
                **_heibox("8088892a516d4e3baf92", "configs/model.yaml", "ckpts/last.ckpt")),
    TamingModel("vqgan_imagenet_f16_16384", "VQGAN first stage, ImageNet, f=16, 16384 codes (reconstruction FID 4.98)",
                **_heibox("a7530b09fed84f80a887", "configs/model.yaml", "ckpts/last.ckpt")),
    TamingModel("vqgan_gumbel_f8", "VQGAN first stage, OpenImages, f=8, 8192 codes, Gumbel quantization "
                "(reconstruction FID 1.49)",
                **_heibox("2e5662443a6b4307b470", "configs/model.yaml", "ckpts/last.ckpt")),
    TamingModel("sflckr", "S-FLCKR landscapes from segmentation maps (transformer + its VQGANs)",
                run="2020-11-09T13-31-51_sflckr",
                **_heibox("73487ab6e5314cb5adba", "configs/2020-11-09T13-31-51-project.yaml", "checkpoints/last.ckpt")),
    TamingModel("cin_transformer", "class-conditional ImageNet, 1.4B-parameter transformer (FID 15.98 .. 5.20 by "
                "decoding settings)", **_koofr("s511rwcv", "90cbd5aa-ef70-4f5e-99bc-f12e5a89380e",
                                               "2021-04-03T19-39-50_cin_transformer")),
    TamingModel("ffhq_transformer", "unconditional FFHQ faces (FID 9.6)",
                **_koofr("yndvfu95", "0fc005bf-3dca-4079-9d40-cdf38d42cd7a", "2021-04-23T18-19-01_ffhq_transformer")),
    TamingModel("celebahq_transformer", "unconditional CelebA-HQ faces (FID 10.2)",
                **_koofr("2xkmielf", "6dddf083-40c8-470a-9360-a9dab2a94e96",
                         "2021-04-23T18-11-19_celebahq_transformer")),
    TamingModel("faceshq_transformer", "FacesHQ (CelebA-HQ + FFHQ) faces, class-conditional on the dataset",
                **_koofr("qqfl2do8", "a04deec9-0c59-4673-8b37-3d696fe63a5d",
                         "2020-11-13T21-41-45_faceshq_transformer")),
    TamingModel("ade20k_transformer", "ADE20K scenes from segmentation maps (FID 35.5)",
                **_koofr("ot46cksa", "0f65c2cd-7102-4550-a2bd-07fd383aac9e", "2020-11-20T21-45-44_ade20k_transformer")),
    TamingModel("coco_transformer", "COCO-Stuff scenes from segmentation maps (FID 20.4)",
                page="https://k00.fr/2zz6i2ce", run="2021-01-20T16-04-20_coco_transformer"),
    TamingModel("drin_transformer", "D-RIN: ImageNet images from depth maps", page="https://k00.fr/39jcugc5",
                run="2020-11-20T12-54-32_drin_transformer"),
    TamingModel("imagenet_vqgan", "VQGAN first stage on ImageNet (the D-RIN transformer's image stage)",
                page="https://k00.fr/u0j2dtac", run="2020-09-23T17-56-33_imagenet_vqgan"),
    TamingModel("imagenetdepth_vqgan", "VQGAN on ImageNet depth maps (the D-RIN transformer's condition stage)",
                page="https://k00.fr/55rlxs6i", run="2020-11-03T15-34-24_imagenetdepth_vqgan"),
    TamingModel("faceshq_vqgan", "VQGAN first stage on FacesHQ (the FacesHQ transformer's image stage)",
                page="https://k00.fr/uxy5usa9", run="2020-11-09T13-33-36_faceshq_vqgan"),
]

#: the packaged catalogue, by name
CATALOGUE: dict[str, TamingModel] = {m.name: m for m in _ENTRIES}
USER_CATALOGUE = "catalogue.yaml"
FIELDS = {f.name for f in dataclasses.fields(TamingModel)}


def _user_entries() -> dict[str, TamingModel]:
    path = vqforge_home() / USER_CATALOGUE
    if not path.is_file():
        return {}
    data = read_yaml(path) or []
    if not isinstance(data, list):
        raise VQForgeError(f"{path}: expected a list of models (name, summary, page, config_url, checkpoint_url, ...)")
    out = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not item.get("name") or not item.get("page"):
            raise VQForgeError(f"{path}: entry {i + 1} needs at least 'name' and 'page'")
        unknown = sorted(set(item) - FIELDS)
        if unknown:
            raise VQForgeError(f"{path}: entry {item['name']!r}: unknown field(s) {', '.join(unknown)} "
                               f"(known: {', '.join(sorted(FIELDS))})")
        out[str(item["name"])] = TamingModel(**{"summary": "", **item})
    return out


def catalogue() -> dict[str, TamingModel]:
    """Every known model: the packaged entries and those of ``$VQFORGE_HOME/catalogue.yaml``."""
    return {**CATALOGUE, **_user_entries()}


def entry(name: str) -> TamingModel:
    """The catalogue entry ``name``; an unknown name is a one-line error listing the known ones."""
    models = catalogue()
    if name not in models:
        raise VQForgeError(f"taming/{name}: not a released model of the original (known: {', '.join(models)}; "
                           f"`vqforge models --available` says what each is)")
    return models[name]
