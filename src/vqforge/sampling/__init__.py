"""Sampling from the second stage: cached decoding, logits processors, sliding windows, completion, and the one
sampling job that every front runs (:mod:`.job`: a :class:`SampleRequest` in, images and their record out).

>>> from vqforge.sampling import SampleRequest, run_job                                     # doctest: +SKIP
>>> result = run_job(SampleRequest(model, count=4, classes=("dress",), size=(256, 512), cfg=2.0, seed=0))
>>> result.images.shape, result.plan.layout.sliding, result.samples[0]       # (4, 3, 256, 512), True, {...}

The steps it takes, one by one:

>>> from vqforge.sampling import SamplingSettings, layout, condition_tokens, sample_images   # doctest: +SKIP
>>> lay = layout(model, (256, 1024), cfg_scale=2.0)         # checked before anything is drawn
>>> cond, uncond = condition_tokens(model, lay, 4, torch.tensor([1, 2, 3, 4]), cfg_scale=2.0)  # class labels
>>> images, tokens = sample_images(model, lay, cond, SamplingSettings(top_k=100, cfg_scale=2.0),
...                                torch.Generator().manual_seed(0), uncond)
"""

from .complete import complete_tokens, token_mask
from .generate import DecodeOptions, DecodeSession, decode_step, prefill, sample_tokens
from .job import JobPlan, SampleResult, plan_job, run_job
from .memory import fit_budget, job_bytes, size_fits
from .pipeline import (Layout, complete_image, condition_tokens, decode_tokens, draw_batches, layout,
                       sample_image_tokens, sample_images)
from .processors import SamplingSettings, process_logits
from .progress import Progress
from .request import Completion, JobStep, Rejection, SampleRequest
from .sliding import sample_sliding, window_bounds, window_offset

__all__ = [
    "SamplingSettings", "process_logits", "Progress", "DecodeOptions", "DecodeSession", "prefill", "decode_step",
    "sample_tokens",
    "sample_sliding", "window_offset", "window_bounds", "token_mask", "complete_tokens",
    "Layout", "layout", "condition_tokens", "sample_image_tokens", "sample_images", "complete_image", "draw_batches",
    "decode_tokens", "fit_budget", "job_bytes", "size_fits",
    "SampleRequest", "Completion", "Rejection", "JobStep", "JobPlan", "SampleResult", "plan_job", "run_job",
]
