"""What a training run shows and logs: the same shape for every trainer.

* :class:`MetricLogger` - scalars to TensorBoard (``RUN_DIR/tb``) and one JSON object a line to
  ``RUN_DIR/metrics.jsonl``. On resume from step S, lines after S (written after the checkpoint by a run
  that was then killed) are dropped, as is a half-written last line.
* :class:`Console` - the progress bar (steps/s and ETA), readable lines (one per validation, warnings),
  and one final summary with the next-step commands; ``json=True`` prints one JSON object instead of the
  summary; ``quiet=True`` shows no bar and no per-validation lines. Only rank 0 shows anything.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

from ..io import VQForgeError, write_text


class MetricLogger:
    """Scalars to TensorBoard and ``metrics.jsonl`` (append-only, flushed each line); disabled on other ranks.

    ``resume_step``: the checkpoint's step when resuming (later lines are dropped; TensorBoard purges them).
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.tb = None
        self._file = None
        if not enabled:
            return
        run_dir = Path(run_dir)
        path = run_dir / "metrics.jsonl"
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            if path.is_file():
                _keep_complete_lines(path, resume_step)
            self._file = open(path, "a", encoding="utf-8")
        except OSError as e:
            raise VQForgeError(f"{path}: cannot write the training log ({e.strerror or type(e).__name__})") from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge)
        except Exception as e:  # noqa: BLE001 - tensorboard is optional at run time
            warnings.warn(f"tensorboard unavailable ({e}); scalars go to {path} only")

    def log(self, step: int, scalars: dict[str, Any]) -> None:
        if not self.enabled or not scalars:
            return
        clean = {k: float(v) for k, v in scalars.items() if v is not None}
        if self.tb is not None:
            for k, v in clean.items():
                self.tb.add_scalar(k, v, step)
        assert self._file is not None
        self._file.write(json.dumps({"step": int(step), **clean}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None
        if self._file is not None:
            self._file.close()
            self._file = None


def _keep_complete_lines(path: Path, resume_step: int | None) -> None:
    """Rewrite ``path`` without a half-written last line and (when resuming) without lines after the step."""
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    keep = [ln for ln in lines if ln.endswith("\n")]
    if resume_step is not None:
        keep = [ln for ln in keep if _step_of(ln) <= resume_step]
    if len(keep) != len(lines):
        write_text(path, "".join(keep))


def _step_of(line: str) -> float:
    try:
        return float(json.loads(line).get("step", -1))
    except (ValueError, AttributeError):
        return math.inf  # an unreadable line is dropped with what followed the checkpoint


def format_metrics(metrics: dict[str, float], shown: tuple[str, ...] = ()) -> str:
    """``{"val/psnr": 17.61, "val_ema/psnr": 17.9}`` -> ``psnr 17.61 | ema psnr 17.9`` (the ``shown`` keys
    without their ``val/`` prefix, then the same keys of the EMA weights; 4 significant digits)."""
    keys = [k for k in shown if k in metrics] or [k for k in metrics if not k.startswith("val_ema/")]
    own = "  ".join(f"{k.split('/', 1)[-1]} {metrics[k]:.4g}" for k in keys)
    ema = [k.replace("val/", "val_ema/", 1) for k in keys if k.replace("val/", "val_ema/", 1) in metrics]
    if ema:
        own += " | ema " + "  ".join(f"{k.split('/', 1)[-1]} {metrics[k]:.4g}" for k in ema)
    return own


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.2 min`` or ``1.5 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


class Console:
    """The progress bar, readable lines and the final summary of a training run (see the module doc)."""

    def __init__(self, title: str, enabled: bool, quiet: bool = False, json_output: bool = False):
        self.title, self.enabled, self.quiet, self.json = title, enabled, quiet, json_output
        self.bar = None

    def start(self, total: int, initial: int, header: str) -> None:
        """Print the run's one-line header and open the progress bar at ``initial`` of ``total`` steps."""
        if not self.enabled:
            return
        print(f"vqforge {self.title}: {header}", file=sys.stderr, flush=True)
        if not self.quiet:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=self.title, dynamic_ncols=True, smoothing=0.05,
                            file=sys.stderr, unit="step")

    def advance(self, postfix: dict[str, str] | None = None) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def line(self, text: str, always: bool = False) -> None:
        """A readable line (above the bar); ``always``: also when quiet (warnings)."""
        if not self.enabled or (self.quiet and not always):
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self, lines: list[str], record: dict[str, Any]) -> None:
        """The final summary (stdout): readable lines, or one JSON object with ``json_output``."""
        if not self.enabled:
            return
        self.close()
        if self.json:
            print(json.dumps(record), flush=True)
        else:
            print("\n".join(lines), flush=True)
