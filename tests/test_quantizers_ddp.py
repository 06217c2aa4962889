"""Codebook state stays identical across ranks under torch.distributed (gloo, 2 CPU processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

SCRIPT = textwrap.dedent('''
    import sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from vqforge.quantizers import CodebookUsage, EMAVectorQuantizer

    def worker(rank, world, init_file, out):
        dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world)
        torch.manual_seed(0)
        q = EMAVectorQuantizer(16, 4, decay=0.9, restart_after=2, kmeans_init=True).train()
        meter = CodebookUsage(16)
        torch.manual_seed(100 + rank)  # every rank sees different latents
        for _ in range(6):
            z = torch.randn(2, 4, 3, 3) + 4.0 * rank
            meter.update(q(z).indices)
        state = torch.cat([q.embedding.weight.flatten(), q.cluster_size, q.embed_sum.flatten(), q.code_age,
                           meter.counts.float()])
        gathered = [torch.zeros_like(state) for _ in range(world)]
        dist.all_gather(gathered, state)
        if rank == 0:
            torch.save({"states": gathered, "total": int(meter.counts.sum())}, out)
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(worker, args=(2, sys.argv[1], sys.argv[2]), nprocs=2)
''')


def test_ema_restart_kmeans_and_usage_agree_across_ranks(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, str(script), str(tmp_path / "init"), str(out)], check=True, env=env,
                   timeout=120)
    res = torch.load(out, weights_only=True)
    a, b = res["states"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # codebook, EMA buffers, ages and usage counts agree
    assert res["total"] == 2 * 6 * 2 * 9  # usage counts are summed over both ranks
