"""Training step time and learning by precision (fp32 vs bf16 autocast) and optimiser kernel, interleaved.

    python bench/train_precision.py [--threads 2] [--repeat 5] [--rows vqgan_tiny gpt_26m ...] [--json out.json]

Rows: one optimisation step of each trainer's stage on random data (the VQGAN at the issue-14 size: ch 64,
ch_mult 1,1,2,2,4, 1024 codes, batch 4 at 128 px, no perceptual net; the 26M GPT 8 x 512, batch 8 x 256; the
tiny configs), timed with the real stage code (``generator_step`` + ``discriminator_step``, the GPT's
cross-entropy, the condition stage's BCE) and the fused or per-tensor Adam. Each configuration is timed in
turn, ``--repeat`` times, after a warm-up; the median is reported with the machine's load average (numbers
taken on a busy machine compare configurations, not machines).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F


def vqgan_step(size: str):
    from vqforge.losses.vqgan_loss import VQGANLoss, VQGANLossConfig
    from vqforge.models.vqgan import AutoencoderConfig, VQGAN, VQGANConfig
    from vqforge.quantizers import L2VQConfig, VQConfig
    from vqforge.train.vqgan import discriminator_step, generator_step

    if size == "issue14":
        dd, q, batch, res = AutoencoderConfig(ch=64, ch_mult=(1, 1, 2, 2, 4), resolution=128, attn_resolutions=(8,)), \
            VQConfig(n_embed=1024, embed_dim=256), 4, 128
    else:  # configs/vqgan_tiny.yaml
        dd, q, batch, res = AutoencoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                                              resolution=32, z_channels=32), \
            L2VQConfig(n_embed=256, embed_dim=32, codebook_dim=8), 8, 32
    model = VQGAN(VQGANConfig(dd, q))
    loss = VQGANLoss(VQGANLossConfig(disc_start=0, perceptual="none", disc_num_layers=2))
    x = torch.rand(batch, 3, res, res) * 2 - 1

    def step(autocast, optimizers):
        for o in optimizers:
            o.zero_grad(set_to_none=True)
        g = generator_step(model, loss, x, 1, autocast=autocast)
        discriminator_step(loss, x, g.reconstruction, 1, autocast=autocast)
        for o in optimizers:
            o.step()

    return [list(model.parameters()), list(loss.discriminator.parameters())], step


def gpt_step(size: str):
    from vqforge.models.gpt import GPT, GPTConfig

    if size == "issue14":
        cfg, batch, t = GPTConfig(vocab_size=1024, block_size=257, n_layer=8, n_head=8, n_embd=512), 8, 256
    else:  # configs/transformer_tiny_class.yaml
        cfg, batch, t = GPTConfig(vocab_size=64, block_size=17, n_layer=2, n_head=4, n_embd=128), 64, 17
    gpt = GPT(cfg)
    idx = torch.randint(0, cfg.vocab_size, (batch, t))

    def step(autocast, optimizers):
        for o in optimizers:
            o.zero_grad(set_to_none=True)
        with autocast():
            logits = gpt(idx[:, :-1])  # (B, T-1, vocab)
        F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1)).backward()
        for o in optimizers:
            o.step()

    return [list(gpt.parameters())], step


ROWS = {"vqgan_issue14": lambda: vqgan_step("issue14"), "vqgan_tiny": lambda: vqgan_step("tiny"),
        "gpt_26m": lambda: gpt_step("issue14"), "gpt_tiny": lambda: gpt_step("tiny")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from vqforge.devices import autocast, cpu_bf16_supported
    from vqforge.train.numerics import adam

    precisions = ["fp32"] + (["bf16"] if cpu_bf16_supported() else [])
    rows = []
    for name in args.rows:
        groups, step = ROWS[name]()
        configs = []
        for precision in precisions:
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            for fused in (False, True):
                opts = [adam(ps, 1e-4, (0.5, 0.9)) if fused else torch.optim.Adam(ps, 1e-4, (0.5, 0.9)) for ps in groups]
                configs.append((f"{precision} {'fused' if fused else 'per-tensor'} Adam",
                                lambda d=dtype, o=opts: step(lambda: autocast(torch.device("cpu"), d), o)))
        times: dict[str, list[float]] = {label: [] for label, _ in configs}
        for label, fn in configs:  # warm-up
            fn()
        for _ in range(args.repeat):  # interleaved
            for label, fn in configs:
                t = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t)
        base = statistics.median(times[configs[0][0]])
        for label, ts in times.items():
            med = statistics.median(ts)
            rows.append({"row": name, "config": label, "median_s": round(med, 4), "speedup": round(base / med, 2)})
            print(f"{name:14s} {label:24s} {med * 1000:9.1f} ms  x{base / med:4.2f}", flush=True)
    info = {"threads": args.threads, "load_average": os.getloadavg(), "torch": torch.__version__,
            "cpu_bf16": cpu_bf16_supported(), "rows": rows}
    print(f"threads {args.threads}, load average {info['load_average']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=2)


if __name__ == "__main__":
    main()
