"""End-to-end rows: the time to finished images, vqforge's pipeline against the original doing the same work its
own way, on the bundled models' weights (loaded into the original's modules under its attribute names).

* ``landscape_e2e``: a 256x512 landscape from a segmentation map (a held-out demo map) with the bundled
  ``landscapes`` model (trained at 64 px: a 32 x 64 token grid under an 8 x 8 window), top-k 30. vqforge:
  ``condition_tokens`` + ``sample_images`` (each window's crop encoded, all at once; the windows a row of tokens
  visits prefilled together; its default decode path) + decoding. The original:
  ``scripts/sample_conditional.py``'s loop, headless: the whole map encoded
  once by the condition stage, then for every token a full forward of its window (condition and image tokens,
  no cache), the logits at the token's place, top-k, a draw; the first stage decodes the grid.
* ``fashion_e2e``: 64 class-conditional Fashion-MNIST images (classes in turn) with guidance 2, top-k 100, the
  bundled ``fashion`` model. vqforge: ``draw_batches`` at its ``auto_batch_size`` (the memory estimate's largest
  batch, at most 64: here all 64 images at once); the original: its ``sample_with_past`` loop per batch of
  :data:`ORIGINAL_BATCH` (its script's batch), with guidance added the only way it allows (conditional and
  unconditional rows in one batch through ``forward_with_past``, logits mixed before top-k), then decoding.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models.transformer import Net2NetTransformer
from ..sampling.processors import SamplingSettings
from . import original
from .measure import Contestant, held_tensors
from .rows import FAST, ORIGINAL, Row

MAPS = Path(__file__).resolve().parents[1] / "demo_assets" / "segmentations"
#: the original's batch in the fashion row: its sampling script's (vqforge picks its own from memory)
ORIGINAL_BATCH = 32


def _orig_vq(vq) -> torch.nn.Module:
    """The original's VQModel (no Lightning) holding the weights of vqforge VQGAN ``vq``."""
    cfg = vq.config
    dd = dataclasses.asdict(cfg.ddconfig)
    dd["ch_mult"], dd["attn_resolutions"] = list(dd["ch_mult"]), list(dd["attn_resolutions"])
    m = original.OrigVQModel(dd, cfg.quantizer.n_embed, cfg.quantizer.embed_dim)
    own = m.state_dict()
    m.load_state_dict({k: v for k, v in vq.state_dict().items() if k in own}, strict=True)
    return m.eval()


def _orig_gpt(model: Net2NetTransformer) -> torch.nn.Module:
    g = model.config.gpt
    m = original.load().GPT(vocab_size=g.vocab_size, block_size=g.block_size, n_layer=g.n_layer, n_head=g.n_head,
                            n_embd=g.n_embd)
    missing, unexpected = m.load_state_dict(model.transformer.state_dict(), strict=False)
    if unexpected or any(not k.endswith("attn.mask") for k in missing):
        raise ValueError(f"the original GPT does not take these weights: {unexpected or missing}")
    return m.eval()


def _orig_encode(vq: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Codebook ids (B, h, w) of ``x`` through the original's VQModel ``vq``."""
    h = vq.quant_conv(vq.encoder(x))
    _, _, (_, _, ind) = vq.quantize(h)
    return ind.view(x.shape[0], h.shape[2], h.shape[3])


def _orig_decode(vq: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """Images from codebook ids (B, h, w) through the original's VQModel ``vq``."""
    B, h, w = idx.shape
    q = vq.quantize.get_codebook_entry(idx.reshape(-1), (B, h, w, vq.quantize.e_dim))
    return vq.decoder(vq.post_quant_conv(q))


def _top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The original's ``top_k_logits``."""
    v, _ = torch.topk(logits, k)
    out = logits.clone()
    out[out < v[..., [-1]]] = -float("inf")
    return out


def original_sliding(gpt, cond_vq, first_vq, c: torch.Tensor, grid_hw, window_hw, top_k: int,
                     gen: torch.Generator) -> torch.Tensor:
    """The original's sliding-window sampling (scripts/sample_conditional.py, ``run_conditional``), headless."""
    B = c.shape[0]
    cidx = _orig_encode(cond_vq, c)  # (B, ch, cw): the whole map at once; equal grids here
    h, w = grid_hw
    wh, ww = window_hw
    idx = torch.zeros(B, h, w, dtype=torch.long)
    for i in range(h):
        local_i = i if i < wh // 2 else (wh - (h - i) if h - i < wh // 2 else wh // 2)
        i0 = i - local_i
        for j in range(w):
            local_j = j if j < ww // 2 else (ww - (w - j) if w - j < ww // 2 else ww // 2)
            j0 = j - local_j
            patch = idx[:, i0:i0 + wh, j0:j0 + ww].reshape(B, -1)
            cpatch = cidx[:, i0:i0 + wh, j0:j0 + ww].reshape(B, -1)
            seq = torch.cat((cpatch, patch), 1)
            logits, _ = gpt(seq[:, :-1])
            logits = logits[:, -wh * ww:, :].reshape(B, wh, ww, -1)[:, local_i, local_j, :]
            probs = F.softmax(_top_k(logits, top_k), dim=-1)
            idx[:, i, j] = torch.multinomial(probs, 1, generator=gen)[:, 0]
    return _orig_decode(first_vq, idx)


def landscape_e2e_row(device: torch.device, with_original: bool, target: str = "", size=(256, 512)) -> Row:
    from .. import load
    from ..sampling.pipeline import condition_tokens, layout, sample_images

    model = load("landscapes").eval().to(device)
    lay = layout(model, size)
    mp = sorted(MAPS.iterdir())[0]
    c, _ = model.condition.read_condition(mp, lay.image_hw)  # (1, labels, H, W)
    c = c.to(device)
    settings = SamplingSettings(top_k=30)
    row = Row("landscape_e2e", f"a {size[0]}x{size[1]} landscape from a map, end to end (bundled landscapes, "
                               f"{lay.grid_hw[0]}x{lay.grid_hw[1]} tokens, {lay.window_hw[0]}x{lay.window_hw[1]} "
                               f"window, top-k 30)", "img/s", items=1, target=target)
    if with_original:
        gpt, cond_vq, first_vq = _orig_gpt(model), _orig_vq(model.cond_stage), _orig_vq(model.first_stage)

        def run_orig() -> None:
            with torch.no_grad():
                original_sliding(gpt, cond_vq, first_vq, c, lay.grid_hw, lay.window_hw, 30,
                                 torch.Generator().manual_seed(0))

        row.contestants.append(Contestant(ORIGINAL, run_orig, held=lambda: held_tensors(gpt),
                                          note="sample_conditional.py loop: a full window forward per token, fp32"))

    def run_ours() -> None:
        with torch.inference_mode():
            cond, _ = condition_tokens(model, lay, 1, c)
            sample_images(model, lay, cond, settings, torch.Generator().manual_seed(0))

    row.contestants.append(Contestant(FAST, run_ours, held=lambda: held_tensors(model.transformer),
                                      note="window-wise condition encoding (batched), a row's windows prefilled "
                                           "together, default path"))
    return row


def fashion_e2e_row(device: torch.device, with_original: bool, target: str = "", n: int = 64) -> Row:
    from .. import load
    from ..sampling.memory import auto_batch_size
    from ..sampling.pipeline import draw_batches, layout

    model = load("fashion").eval().to(device)
    lay = layout(model, cfg_scale=2.0)
    batch = auto_batch_size(model, lay, n, guided=True)
    labels = [torch.tensor([k % 10]) for k in range(n)]
    settings = SamplingSettings(top_k=100, cfg_scale=2.0)
    row = Row("fashion_e2e", f"{n} class-conditional Fashion-MNIST images, guidance 2, top-k 100, end to end "
                             f"(bundled fashion; batch: original {ORIGINAL_BATCH}, vqforge {batch})", "img/s", items=n,
              target=target)
    if with_original:
        gpt, first_vq = _orig_gpt(model), _orig_vq(model.first_stage)
        null = model.condition.null_id
        steps = lay.n_tokens

        def run_orig() -> None:
            gen = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for start in range(0, n, ORIGINAL_BATCH):
                    y = torch.arange(start, min(n, start + ORIGINAL_BATCH)) % 10
                    B = y.shape[0]
                    x = torch.cat((y, torch.full_like(y, null)))[:, None]  # (2B, 1): conditional, then NULL
                    past, out = None, []
                    for k in range(steps):  # sample_with_past, with the guidance mix before top-k
                        logits, _, present = gpt.forward_with_past(x, past=past, past_length=k)
                        past = [present] if past is None else past + [present]
                        lc, lu = logits[:, -1].chunk(2)
                        mixed = lu + 3.0 * (lc - lu)  # cond + 2 (cond - uncond)
                        tok = torch.multinomial(F.softmax(_top_k(mixed, 100), -1), 1, generator=gen)  # (B, 1)
                        out.append(tok)
                        x = torch.cat((tok, tok))
                    _orig_decode(first_vq, torch.cat(out, 1).view(B, *lay.grid_hw))

        row.contestants.append(Contestant(ORIGINAL, run_orig, held=lambda: held_tensors(gpt),
                                          note=f"sample_with_past per batch of {ORIGINAL_BATCH} (+ guidance rows), "
                                               f"fp32"))

    def run_ours() -> None:
        with torch.inference_mode():
            for _ in draw_batches(model, lay, labels, n, batch, settings, torch.Generator().manual_seed(0)):
                pass

    row.contestants.append(Contestant(FAST, run_ours, held=lambda: held_tensors(model.transformer),
                                      note=f"draw_batches at auto_batch_size {batch} (the memory estimate's largest, "
                                           f"at most 64: {-(-n // batch)} batch(es), {lay.n_tokens} steps each), "
                                           f"default path, channels-last decode"))
    return row
