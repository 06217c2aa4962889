import os
import sys
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def reference(name: str) -> dict:
    """A reference-vector case produced by the original implementation."""
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


def cli_env() -> dict:
    """Environment for `python -m vqforge` subprocesses that import this checkout's sources."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


PYTHON = sys.executable


@pytest.fixture
def one_thread():
    """Tiny ops run far faster on one thread than two on a busy CPU (thread hand-offs dominate)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
