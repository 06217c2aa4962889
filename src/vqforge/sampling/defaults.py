"""The one table of sampling defaults, and how a model card's suggestions override it.

Every front (``vqforge sample`` / ``complete``, :func:`vqforge.sample`, the web app, the demo, the trainer's
previews) gets its settings from :func:`settings_for` through the sampling job (:mod:`vqforge.sampling.job`):
what the caller gives wins, then the model card's ``sampling`` suggestion (:func:`card_sampling`), then
:data:`SAMPLING_DEFAULTS`.
"""

from __future__ import annotations

from .processors import SamplingSettings

#: model card ``sampling`` keys (``model.yaml`` ``extra``) -> the names `vqforge sample` and the web app use
CARD_SAMPLING_KEYS = {"top_k": "top_k", "top_p": "top_p", "temperature": "temperature", "cfg": "cfg",
                      "cfg_scale": "cfg"}

#: sampling settings a model card does not suggest: top-k 100, no nucleus filter, temperature 1, no guidance
SAMPLING_DEFAULTS = {"top_k": 100, "top_p": None, "temperature": 1.0, "cfg": 0.0}


def card_sampling(card: dict) -> dict[str, float]:
    """The sampling settings a model card suggests under ``sampling``: ``top_k``, ``top_p``, ``temperature``,
    ``cfg`` (``cfg_scale`` too), numbers only."""
    sampling = card.get("sampling") if isinstance(card, dict) else None
    if not isinstance(sampling, dict):
        return {}
    return {CARD_SAMPLING_KEYS[k]: v for k, v in sampling.items()
            if k in CARD_SAMPLING_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}


def sampling_defaults(card: dict) -> dict:
    """Every sampling setting a job on a model with this card starts from: the card's suggestion
    (:func:`card_sampling`), else :data:`SAMPLING_DEFAULTS`."""
    return {**SAMPLING_DEFAULTS, **card_sampling(card)}


def settings_for(card: dict, top_k: float | None = None, top_p: float | None = None,
                 temperature: float | None = None, cfg: float | None = None, greedy: bool = False
                 ) -> SamplingSettings:
    """The :class:`SamplingSettings` of a job: each value given, else the card's (:func:`sampling_defaults`).
    ``top_k`` 0 and ``top_p`` None switch those filters off. ValueError names a value out of range."""
    given = dict(top_k=top_k, top_p=top_p, temperature=temperature, cfg=cfg)
    d = {**sampling_defaults(card), **{k: v for k, v in given.items() if v is not None}}
    return SamplingSettings(temperature=float(d["temperature"]), top_k=int(d["top_k"]) if d["top_k"] else None,
                            top_p=d["top_p"], cfg_scale=float(d["cfg"]), greedy=greedy)


def card_max_scale(card: dict) -> tuple[float, str] | None:
    """(the largest output side as a multiple of the trained side that a model was trained for, why) from its
    card's ``max_scale`` and ``max_scale_why`` (e.g. ``1`` and "trained on whole 28x28 images, never on crops of
    larger ones": the sliding window has nothing to slide over), or None when the card does not say."""
    scale = card.get("max_scale")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
        return None
    return float(scale), str(card.get("max_scale_why") or "its training data")
