"""The benchmark suites: which rows, at which sizes, with which targets and time budgets.

``cpu``: the rows of issue 14 (2-core CPU, the original's numbers measured there). ``gpu``: the rows of issue 15
(the original's numbers from an H100 in ``peers.md``), ordered by priority so that a run that runs out of time
loses the least important rows. ``quick`` shrinks every model to a toy size (tests, smoke runs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from .e2e_rows import fashion_e2e_row, landscape_e2e_row
from .gpt_rows import gpt_sample_row, gpt_train_row
from .rows import FAST, FAST_LEVERS, GPTSpec, Levers, Row, VQGANSpec
from .vqgan_rows import vqgan_attention_row, vqgan_reconstruct_row, vqgan_train_row


@dataclass(frozen=True)
class RowPlan:
    """A row to build and time: ``build(device, with_original)``; ``budget_s`` caps its timed rounds, and
    ``cost_s`` (a guess of its whole wall time, building, warm-up and compiling included) lets a suite with a
    deadline skip rows that cannot finish."""

    id: str
    build: Callable[[torch.device, bool], Row]
    budget_s: float = 60.0
    cost_s: float = 30.0
    #: an untimed first run of each contestant (compile time) and an extra run for peak memory; the end-to-end
    #: rows, minutes per run of the original, time one run each and nothing else (their one-time set-up included)
    first_run: bool = True
    memory: bool = True


# The issue-14 CPU models.
CPU_VQGAN = VQGANSpec()  # ch 64, ch_mult 1,1,2,2,4, 1 res block, attn at 8, z 64, 1024 codes, batch 4 at 128²
CPU_GPT = GPTSpec()  # 8 x 512, 8 heads, vocab 1024, block 257, batch 8 x 256
# The issue-15 GPU models: the paper's f16 VQGAN (72M), GPT 24 x 1024 (305M) and the 1.4B class-conditional GPT.
PAPER_VQGAN = VQGANSpec(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,), z_channels=256,
                        n_embed=1024, embed_dim=256, resolution=256, batch=8)
GPT_305M = GPTSpec(n_layer=24, n_head=16, n_embd=1024, vocab=1024, block=257, batch=16, tokens=256)
GPT_1_4B = GPTSpec(n_layer=48, n_head=24, n_embd=1536, vocab=16384, block=257, batch=1, tokens=256)
# Toy sizes for --quick.
QUICK_VQGAN = VQGANSpec(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), z_channels=8, n_embed=64,
                        embed_dim=8, resolution=32, batch=2)
QUICK_GPT = GPTSpec(n_layer=2, n_head=2, n_embd=64, vocab=64, block=17, batch=2, tokens=16, top_k=10)


def _vq(spec: VQGANSpec, quick: bool, **kw) -> VQGANSpec:
    return dataclasses.replace(QUICK_VQGAN if quick else spec, **kw)


def _gpt(spec: GPTSpec, quick: bool, **kw) -> GPTSpec:
    return dataclasses.replace(QUICK_GPT if quick else spec, **kw)


def _one_off(*names: str) -> dict[str, Levers]:
    """The fast levers, and the fast levers with one changed at a time (named as in the levers table)."""
    change = {"precision fp32": {"precision": "fp32"}, "no channels_last": {"channels_last": False},
              "no fused optimizer": {"fused": False}, "+ torch.compile": {"compile": True}}
    return {FAST: FAST_LEVERS, **{n: dataclasses.replace(FAST_LEVERS, **change[n]) for n in names}}


def cpu_suite(quick: bool = False) -> list[RowPlan]:
    """Issue 14's table: VQGAN train step and reconstruct, GPT train step, GPT sampling at batch 1 and 4; issue 26's
    end-to-end rows (64 guided fashion images, a 256x512 landscape from a map) on the bundled models."""
    vq, gpt = _vq(CPU_VQGAN, quick), _gpt(CPU_GPT, quick)
    return [
        RowPlan("vqgan_train", lambda d, o: vqgan_train_row(vq, d, o, target=">= 2x"), budget_s=90, cost_s=60),
        RowPlan("vqgan_reconstruct", lambda d, o: vqgan_reconstruct_row(vq, d, o, target=">= 1.5x"),
                budget_s=30, cost_s=15),
        RowPlan("gpt_train", lambda d, o: gpt_train_row(gpt, d, o, target=">= 2x"), budget_s=60, cost_s=45),
        RowPlan("gpt_sample_b1", lambda d, o: gpt_sample_row(dataclasses.replace(gpt, batch=1), d, o,
                                                             target=">= 3x"), budget_s=60, cost_s=40),
        RowPlan("gpt_sample_b4", lambda d, o: gpt_sample_row(dataclasses.replace(gpt, batch=4), d, o,
                                                             target=">= 4x"), budget_s=80, cost_s=50),
        RowPlan("fashion_e2e", lambda d, o: fashion_e2e_row(d, o, target=">= 4x", n=4 if quick else 64),
                budget_s=1, cost_s=120, first_run=False, memory=False),
        RowPlan("landscape_e2e", lambda d, o: landscape_e2e_row(d, o, target=">= 4x",
                                                                size=(64, 80) if quick else (256, 512)),
                budget_s=1, cost_s=400, first_run=False, memory=False),
    ]


def gpu_suite(quick: bool = False) -> list[RowPlan]:
    """Issue 15's rows, most important first (those with targets, then the reference-only sampling rows)."""
    vq = _vq(PAPER_VQGAN, quick)
    rec = _vq(PAPER_VQGAN, quick, batch=32 if not quick else 4)
    g305, g14 = _gpt(GPT_305M, quick), _gpt(GPT_1_4B, quick)

    def sample(spec: GPTSpec, batch: int, target: str = "") -> Callable[[torch.device, bool], Row]:
        # the eager fp32 sampler is left out on the GPU: it would cost as much time as the original
        return lambda d, o: gpt_sample_row(dataclasses.replace(spec, batch=batch), d, o, target=target, exact=False)

    return [
        RowPlan("vqgan_train", lambda d, o: vqgan_train_row(vq, d, o, target=">= 3x at <= 0.5x memory"),
                budget_s=20, cost_s=40),
        RowPlan("vqgan_reconstruct", lambda d, o: vqgan_reconstruct_row(rec, d, o, target=">= 3x"),
                budget_s=10, cost_s=20),
        RowPlan("gpt_train", lambda d, o: gpt_train_row(g305, d, o, target=">= 5x"), budget_s=15, cost_s=30),
        RowPlan("gpt1.4b_sample_b1", sample(g14, 1, ">= 15x"), budget_s=30, cost_s=110),
        RowPlan("gpt1.4b_sample_b64", sample(g14, 64, ">= 10x"), budget_s=30, cost_s=110),
        RowPlan("gpt305m_sample_b1", sample(g305, 1), budget_s=20, cost_s=70),
        RowPlan("gpt305m_sample_b16", sample(g305, 16), budget_s=20, cost_s=60),
        RowPlan("gpt1.4b_sample_b16", sample(g14, 16), budget_s=30, cost_s=90),
        # whether torch.compile pays for training, if time is left (vqforge only)
        RowPlan("vqgan_train_compile", lambda d, o: vqgan_train_row(vq, d, False, variants=_one_off("+ torch.compile")),
                budget_s=20, cost_s=150),
        RowPlan("gpt_train_compile", lambda d, o: gpt_train_row(g305, d, False, variants=_one_off("+ torch.compile")),
                budget_s=15, cost_s=120),
    ]


def levers_suite(quick: bool = False) -> list[RowPlan]:
    """Each CPU lever switched off one at a time from vqforge's fast path, the attention block against the
    original's, then (rows ``*_compile``, slow to compile on a small CPU) ``torch.compile`` added. The original
    runs only in the attention row."""
    vq, gpt = _vq(CPU_VQGAN, quick), _gpt(CPU_GPT, quick)
    return [
        RowPlan("vqgan_train", lambda d, o: vqgan_train_row(vq, d, False, variants=_one_off(
            "precision fp32", "no channels_last", "no fused optimizer")), budget_s=120, cost_s=120),
        RowPlan("vqgan_reconstruct", lambda d, o: vqgan_reconstruct_row(vq, d, False, variants=_one_off(
            "precision fp32", "no channels_last")), budget_s=40, cost_s=30),
        RowPlan("gpt_train", lambda d, o: gpt_train_row(gpt, d, False, variants=_one_off(
            "precision fp32", "no fused optimizer")), budget_s=90, cost_s=90),
        # decoding a 1024² image with the f16 paper model: its bottleneck attends over 64 x 64 latents
        RowPlan("vqgan_attention", lambda d, o: vqgan_attention_row(32 if quick else 512, 8 if quick else 64, 1, d, o),
                budget_s=40, cost_s=40),
        RowPlan("vqgan_reconstruct_compile", lambda d, o: vqgan_reconstruct_row(vq, d, False, variants=_one_off(
            "+ torch.compile")), budget_s=40, cost_s=120),
        RowPlan("vqgan_train_compile", lambda d, o: vqgan_train_row(vq, d, False, variants=_one_off(
            "+ torch.compile")), budget_s=120, cost_s=300),
        RowPlan("gpt_train_compile", lambda d, o: gpt_train_row(gpt, d, False, variants=_one_off(
            "+ torch.compile")), budget_s=90, cost_s=200),
    ]


SUITES: dict[str, Callable[[bool], list[RowPlan]]] = {"cpu": cpu_suite, "gpu": gpu_suite, "levers": levers_suite}
