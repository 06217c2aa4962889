"""Measured peak memory against vqforge.models.footprint's estimates (the calibration of its SAFETY factor).

For each bundled model and size, a fresh process (1 thread) runs one decode or encode under inference mode and
reports the growth of its peak resident set (``ru_maxrss``) over what it had after a tiny warm-up run; the
estimate is :func:`vqforge.models.footprint.vqgan_decode_bytes` / ``vqgan_encode_bytes``. Prints one row per size:
``model part size measured_MiB estimate_MiB ratio`` (ratio = measured / estimate, which must stay below 1).

    OMP_NUM_THREADS=1 python bench/memory_calibration.py
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
from vqforge.api import load
name, part, h, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fs = load(name).eval().first_stage
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with torch.inference_mode():
    fs.decode_indices(torch.zeros(1, 2, 2, dtype=torch.long))
    fs.encode_to_indices(torch.zeros(1, fs.config.ddconfig.in_channels, 8, 8))
    if part == "decoder":
        z = torch.zeros(1, h, w, dtype=torch.long); base = rss(); fs.decode_indices(z)
    else:
        x = torch.zeros(1, fs.config.ddconfig.in_channels, h, w); base = rss(); fs.encode_to_indices(x)
print(json.dumps(rss() - base))
"""

CASES = [("fashion", "decoder", s) for s in (16, 32, 48, 64, 96)] + \
        [("fashion", "encoder", s) for s in (64, 128, 256, 384)] + \
        [("landscapes", "decoder", s) for s in (16, 32, 48, 64)] + \
        [("landscapes", "encoder", s) for s in (128, 256, 384, 512)]


def main() -> None:
    from vqforge.api import load
    from vqforge.models.footprint import vqgan_decode_bytes, vqgan_encode_bytes

    for name, part, side in CASES:
        cfg = load(name).first_stage.config
        out = subprocess.run([sys.executable, "-c", CHILD, name, part, str(side), str(side)], capture_output=True,
                             text=True, check=True)
        measured = json.loads(out.stdout.strip().splitlines()[-1])
        est = (vqgan_decode_bytes if part == "decoder" else vqgan_encode_bytes)(cfg, (side, side)).peak
        print(f"{name:10s} {part:7s} {side:4d} {measured / 2**20:9.1f} {est / 2**20:9.1f} {measured / est:5.2f}",
              flush=True)


if __name__ == "__main__":
    main()
