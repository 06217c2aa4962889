"""The progress hook of the sampling loops: one callable, called after every sampled token.

``callback(done, total, tokens)``: ``done`` tokens of ``total`` are sampled; ``tokens`` is the tensor being
filled, (B, h, w) from :mod:`~vqforge.sampling.pipeline` and :func:`~vqforge.sampling.sliding.sample_sliding`,
(B, steps) from :func:`~vqforge.sampling.generate.sample_tokens` (entries not yet sampled hold no meaning).
It serves progress bars, live previews (decode the rows done so far) and cancellation: an exception raised
by the callback stops sampling and propagates to the caller.
"""

from __future__ import annotations

from typing import Callable

import torch

Progress = Callable[[int, int, torch.Tensor], None]
