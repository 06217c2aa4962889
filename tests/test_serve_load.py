"""`vqforge serve` under load on loopback: 20 concurrent sample requests, all answered, none mixed, memory flat.

The numbers (latency, memory) are recorded by `bench/serve_load.py` in docs/benchmarks.md; this test asserts
what the load must never break.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi", reason="vqforge serve needs fastapi (pip install 'vqforge[serve]')")

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from serve_load import burst, check, requests_for, sample_once  # noqa: E402
from serve_support import Server, build_models  # noqa: E402

N = 20


def test_twenty_concurrent_samples_all_answered_none_mixed_memory_flat(tmp_path):
    paths = build_models(tmp_path)
    with Server([paths["tinyclass"]], "--max-queue", "32") as server:
        model = httpx.get(server.url + "/api/models").json()["models"][0]
        reqs = requests_for(model, N, (32, 32))
        references = {a["fields"]["seed"]: a["pixels"] for a in (sample_once(server.url, f) for f in reqs)}
        assert len(set(references.values())) == N  # distinct seeds give distinct images: a mix-up would show
        rss = [server.rss_mb()]
        for _ in range(3):
            answers = burst(server.url, reqs)
            assert check(answers, references) == []
            assert all(a["size"] == [32, 32] for a in answers)
            rss.append(server.rss_mb())
        # The first burst may still grow allocator pools; after it, memory must not climb with every burst.
        assert rss[-1] - rss[1] < 20, f"server memory grew {rss} MB"
        assert httpx.get(server.url + "/api/models").status_code == 200
