"""Load test of `vqforge serve` on loopback: bursts of concurrent sample requests; none lost, none mixed, memory flat.

    PYTHONPATH=src python bench/serve_load.py                       # a tiny random-weight class model
    PYTHONPATH=src python bench/serve_load.py --model fashion --requests 20 --rounds 3

Each request asks for one image with its own seed (and class, for class models) and follows its job's event
stream until done, then downloads the PNG. Before the bursts every seed is sampled once, alone: a burst's
answer must equal that reference pixel for pixel and carry its own seed and job id (nothing mixed). The
server's resident memory is read after each burst (it keeps the last ``--keep-jobs`` results by design).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m vqforge serve --model ...` on a free loopback port, stopped on exit."""

    def __init__(self, models: list, *args: str, threads: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads),
               "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        cmd = [sys.executable, "-m", "vqforge", "serve", "--device", "cpu", "--port", str(self.port),
               "--model", *map(str, models), *args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def __enter__(self) -> "Server":
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vqforge serve exited: {self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/api/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError("vqforge serve did not answer within 120 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def rss_mb(self) -> float:
        """Resident memory of the server process (Linux /proc)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")


def sample_once(url: str, fields: dict) -> dict:
    """Submit one sample job, follow its event stream to the end, download its first image."""
    import httpx
    import numpy as np
    from PIL import Image

    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=600) as c:
        token = c.get("/api/models").json()["token"]  # every POST carries the server's token (serve/guard.py)
        r = c.post("/api/jobs/sample", data={k: str(v) for k, v in fields.items()}, headers={"X-VQForge-Token": token})
        if r.status_code != 202:
            return {"fields": fields, "error": f"{r.status_code} {r.text}"}
        job, last = r.json()["id"], None
        with c.stream("GET", f"/api/jobs/{job}/events") as events:
            for line in events.iter_lines():
                if line.startswith("data: "):
                    last = json.loads(line[6:])
        if last is None or last["state"] != "done":
            return {"fields": fields, "error": f"job {job} ended {last and last['state']}: {last and last['message']}"}
        png = c.get(last["results"][0]["url"]).content
    im = Image.open(io.BytesIO(png))
    pixels = np.asarray(im.convert("RGB"))
    return {"fields": fields, "job": job, "seconds": time.perf_counter() - t0, "meta": json.loads(im.text["vqforge"]),
            "pixels": hashlib.sha256(pixels.tobytes()).hexdigest(), "size": list(pixels.shape[:2])}


def burst(url: str, requests: list[dict]) -> list[dict]:
    """All ``requests`` at once (one thread each); the answers in request order."""
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda f: sample_once(url, f), requests))


def check(answers: list[dict], references: dict[int, str]) -> list[str]:
    """Problems: unanswered requests, or an answer that is not its own request's image."""
    problems = []
    for a in answers:
        seed = a["fields"]["seed"]
        if "error" in a:
            problems.append(f"seed {seed}: {a['error']}")
        elif a["meta"]["seed"] != seed or a["meta"]["job"] != a["job"] or a["pixels"] != references[seed]:
            problems.append(f"seed {seed}: got the image of seed {a['meta']['seed']} / job {a['meta']['job']}")
    return problems


def requests_for(model: dict, n: int, size: tuple[int, int], first_seed: int = 0) -> list[dict]:
    """n sample requests with distinct seeds (and classes in turn, for class models)."""
    out = []
    for i in range(n):
        f = {"model": model["name"], "height": size[0], "width": size[1], "seed": first_seed + i}
        if model.get("classes"):
            f["class_label"] = i % len(model["classes"])
        out.append(f)
    return out


def tiny_class_model(root: Path) -> Path:
    """A random-weight class model (f4 VQGAN trained at 16 px, 2-layer GPT, 5 classes + NULL) saved under root."""
    import torch

    from vqforge.api import save_model
    from vqforge.models.conditioning import ClassConfig
    from vqforge.models.gpt import GPTConfig
    from vqforge.models.transformer import Net2NetTransformer, TransformerConfig
    from vqforge.models.vqgan import AutoencoderConfig, VQGANConfig
    from vqforge.quantizers import VQConfig

    torch.manual_seed(0)
    dd = AutoencoderConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(), resolution=16, z_channels=8)
    cfg = TransformerConfig(gpt=GPTConfig(vocab_size=64, block_size=96, n_layer=2, n_head=2, n_embd=32),
                            first_stage=VQGANConfig(ddconfig=dd, quantizer=VQConfig(n_embed=32, embed_dim=8)),
                            cond=ClassConfig(n_classes=5, null_class=True))
    return save_model(Net2NetTransformer(cfg), root / "tinyclass")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model to serve (default: a tiny random-weight class model)")
    ap.add_argument("--requests", type=int, default=20, help="concurrent requests per burst (default 20)")
    ap.add_argument("--rounds", type=int, default=3, help="bursts (default 3)")
    ap.add_argument("--size", default=None, help="HxW of each image (default: twice the trained side, 32x32 for the "
                                                 "tiny model)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server (default 1)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or tiny_class_model(Path(tmp))
        with Server([model], "--max-queue", str(max(32, args.requests)), threads=args.threads) as server:
            import httpx

            info = httpx.get(server.url + "/api/models").json()["models"][0]
            trained = info["trained_size"]
            size = tuple(int(v) for v in args.size.split("x")) if args.size else (2 * trained[0], 2 * trained[1])
            reqs = requests_for(info, args.requests, size)
            refs = {a["fields"]["seed"]: a["pixels"] for a in (sample_once(server.url, f) for f in reqs)}
            rss = [server.rss_mb()]
            rows = []
            for r in range(args.rounds):
                t0 = time.perf_counter()
                answers = burst(server.url, reqs)
                wall = time.perf_counter() - t0
                problems = check(answers, refs)
                rss.append(server.rss_mb())
                lat = sorted(a["seconds"] for a in answers if "seconds" in a)
                rows.append((r + 1, len(lat), len(problems), wall, statistics.median(lat), lat[-1], rss[-1]))
                for p in problems:
                    print("PROBLEM:", p)
    print(f"- Device: CPU ({platform.machine()}, {args.threads} torch thread(s) in the server, torch "
          f"{__import__('torch').__version__}). Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
    print(f"- Command: `{' '.join(['PYTHONPATH=src python bench/serve_load.py', *sys.argv[1:]])}`")
    print(f"- Model: {info['name']} ({info['mode']}), {size[0]}x{size[1]} px per request; "
          f"resident memory before the bursts (after one sequential pass): {rss[0]:.0f} MB.\n")
    print("| burst | answered | wrong or mixed | wall s | median latency s | max latency s | server RSS after (MB) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r, n, bad, wall, med, mx, mem in rows:
        print(f"| {r} | {n}/{args.requests} | {bad} | {wall:.2f} | {med:.2f} | {mx:.2f} | {mem:.0f} |")


if __name__ == "__main__":
    main()
