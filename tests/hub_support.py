"""Test helpers for downloads: a real HTTP server on 127.0.0.1 (range requests, faults on demand) and a small
model in the original's format (project YAML + Lightning-style checkpoint) built from the reference fixtures."""

from __future__ import annotations

import http.server
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

FIX = Path(__file__).parent / "fixtures"


def write_taming_pair(out: Path, seed: int | None = None) -> tuple[Path, Path]:
    """An unconditional Net2NetTransformer in the original's layout (the GPT and f4 VQGAN reference fixtures);
    ``seed`` perturbs the GPT's weights (the same size, different bytes)."""
    gpt = torch.load(FIX / "gpt_small.pt", weights_only=True)
    vq = torch.load(FIX / "vqgan_f4_legacy.pt", weights_only=True)
    vq_params = {"embed_dim": vq["config"]["embed_dim"], "n_embed": vq["config"]["n_embed"],
                 "ddconfig": dict(vq["config"]["ddconfig"]),
                 "lossconfig": {"target": "taming.modules.losses.DummyLoss"}}
    params = {"transformer_config": {"target": "taming.modules.transformer.mingpt.GPT", "params": dict(gpt["config"])},
              "first_stage_config": {"target": "taming.models.vqgan.VQModel", "params": vq_params},
              "cond_stage_config": "__is_unconditional__", "sos_token": 64}
    cfg = {"model": {"base_learning_rate": 4.5e-6, "target": "taming.models.cond_transformer.Net2NetTransformer",
                     "params": params}}
    sd = dict(gpt["state_dict"])
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        sd = {k: (v + 0.01 * torch.randn(v.shape, generator=g)) if v.is_floating_point() and "mask" not in k else v
              for k, v in sd.items()}
    sd.update({f"first_stage_model.{k}": v for k, v in vq["state_dict"].items()})
    out.mkdir(parents=True, exist_ok=True)
    (out / "project.yaml").write_text(yaml.safe_dump(cfg))
    torch.save({"state_dict": sd, "global_step": 7}, out / "last.ckpt")
    return out / "project.yaml", out / "last.ckpt"


@dataclass
class Route:
    """What the server answers for one path: ``body`` with ``content_type``; ``cut_after``: on the first request
    only, announce the whole length and close the connection after that many bytes; ``status``: an error code."""

    body: bytes = b""
    content_type: str = "application/octet-stream"
    cut_after: int | None = None
    status: int = 200


@dataclass
class FileServer:
    """A threaded HTTP server on 127.0.0.1 serving :class:`Route` s, honouring ``Range: bytes=N-``."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)

    def start(self) -> "FileServer":
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                owner.requests.append((self.path, self.headers.get("Range")))
                route = owner.routes.get(self.path)
                if route is None or route.status != 200:
                    code = 404 if route is None else route.status
                    self.send_error(code)
                    return
                body, start = route.body, 0
                m = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if m and route.cut_after is None:
                    start = int(m.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if route.cut_after is not None:
                    self.wfile.write(body[:route.cut_after])
                    self.wfile.flush()
                    route.cut_after = None  # the next request succeeds
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
