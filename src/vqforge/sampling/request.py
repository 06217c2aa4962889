"""What one sampling job is asked to do: :class:`SampleRequest`, with :class:`Completion` and :class:`Rejection`
for the two kinds of job beside plain sampling, and :class:`JobStep`, what its progress callback sees.

Every front builds one request and hands it to :func:`vqforge.sampling.job.run_job`: ``vqforge sample`` /
``complete``, :func:`vqforge.sample`, the web app's engine, the demo and the trainer's previews. A value a
request leaves ``None`` is the job's to choose, the same way for all of them (the model card's sampling settings
then :data:`~vqforge.sampling.defaults.SAMPLING_DEFAULTS`; the trained size; a batch that fits the budget).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch

from ..memory import Budget
from ..models.transformer import Net2NetTransformer
from .generate import DecodeOptions
from .pipeline import Layout

#: ``read((H, W), channels) -> (image (channels, H, W) in [-1, 1], mask (H, W) bool)``: a completion's input,
#: read at the size the job planned (so that a size over the budget is refused before anything of it is read)
CompletionReader = Callable[[tuple[int, int], int], tuple[torch.Tensor, torch.Tensor]]
#: ``score(images (B, C, H, W) in [-1, 1], classes (B,): the class each image was drawn for) -> (B,)``; higher is
#: better (e.g. a classifier's probability of the class)
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Completion:
    """A completion job: resample the part of an image under a mask (white / True = resample).

    ``read`` gives the image and mask at the job's size (:data:`CompletionReader`; :meth:`of` for tensors in
    memory); ``image_hw`` is their size when known before reading (tensors), else the job's size is the request's
    or the trained size. ``paste_back``: the original pixels are put back outside the mask (False: the raw
    decode). ``image_name`` / ``mask_name`` name the files in errors and the record.
    """

    read: CompletionReader
    paste_back: bool = True
    image_hw: tuple[int, int] | None = None
    image_name: str = "image"
    mask_name: str = "mask"

    @classmethod
    def of(cls, image: torch.Tensor, mask: torch.Tensor, paste_back: bool = True) -> "Completion":
        """A completion of ``image`` (C, H, W) in [-1, 1] where ``mask`` (H, W) is set, both in memory."""
        return cls(lambda _hw, _channels: (image, mask), paste_back, tuple(image.shape[-2:]))


@dataclass(frozen=True)
class Rejection:
    """Classifier-based rejection (:mod:`.rejection`): draw ``count / acceptance`` candidates, keep those
    ``score`` rates best for the class each was drawn for; ``classifier`` names it in the record."""

    acceptance: float
    score: Scorer
    classifier: str = "classifier"


@dataclass(frozen=True)
class SampleRequest:
    """One sampling job. Only ``model`` is required; every ``None`` is chosen by the job.

    * what: ``count`` images (None: one per condition file, else 8; a completion: 1); conditions from
      ``classes`` (ids or names, used in turn; None: every class), ``cond`` (a condition file or folder, or maps
      in memory: PIL images, (H, W) arrays or tensors), ``inputs`` (model inputs (1, ...) given directly, with
      ``sources`` naming where each came from) or ``cond_tokens`` (condition tokens (count, Tc), as the
      trainer's previews have them); none of these: the mode's default input.
    * size: ``size`` (H, W) px, or a number: that many times the trained size (None: the trained size, or the
      completion's image); ``window`` (tokens; None: the trained grid); ``cond_encoding`` (``window`` / ``whole``).
    * how: ``top_k`` / ``top_p`` / ``temperature`` / ``cfg`` (None: the model card's, then the one table of
      :mod:`.defaults`), ``greedy``; ``seed`` (None: torch's global generator, as training previews draw).
    * resources: ``batch_size`` (None: the largest that fits, at most 64), ``budget`` (None: a share of the memory
      available, :meth:`~vqforge.memory.Budget.default`), ``decoding`` (precision and compilation).
    * kind: ``completion`` or ``rejection`` (see their classes); ``name`` prefixes errors (e.g. the model's path).
    """

    model: Net2NetTransformer
    count: int | None = None
    classes: tuple[str, ...] | None = None
    cond: Any = None
    inputs: tuple[torch.Tensor | None, ...] | None = None
    sources: tuple[str | None, ...] | None = None
    cond_tokens: torch.Tensor | None = None
    size: tuple[int, int] | float | None = None
    window: tuple[int, int] | None = None
    cond_encoding: str = "window"
    top_k: float | None = None
    top_p: float | None = None
    temperature: float | None = None
    cfg: float | None = None
    greedy: bool = False
    seed: int | None = 0
    batch_size: int | None = None
    budget: Budget | None = None
    decoding: DecodeOptions = DecodeOptions()
    completion: Completion | None = None
    rejection: Rejection | None = None
    name: str = ""


class JobStep(NamedTuple):
    """What a job's progress callback sees after every token drawn.

    ``done`` / ``total``: tokens of the whole job (each sample's count: a batch of B advances ``done`` by B);
    ``batch_done`` / ``batch_total``: token steps of the current batch; ``tokens``: that batch's grid (B, h, w)
    being filled (entries not yet drawn hold no meaning); ``layout``: the job's sizes. Raising from the callback
    stops the job (cancel): nothing is returned and nothing written.
    """

    done: int
    total: int
    batch_done: int
    batch_total: int
    tokens: torch.Tensor
    layout: Layout


#: a job's progress callback (see :class:`JobStep`)
JobProgress = Callable[[JobStep], None]
