"""The one training loop: what every trainer shares; a stage supplies build / step / validate / preview.

:func:`run` owns the resume guard, distributed set-up and teardown (in ``finally``), seeding, the
resumable data stream (and the count of unreadable images it skipped), EMA, precision, the
numerical-fault guard (:class:`~vqforge.train.numerics.StepGuard`), logging, SIGINT/SIGTERM, the time
limit, the log / validate / preview / checkpoint schedule, the ``best`` checkpoint with a warning when
validation keeps getting worse, the progress bar and the final summary. A :class:`Stage` (``vqgan``,
``transformer``, ``condition``) builds its models, data and optimisers, computes one step's losses and
gradients, validates a model and draws a preview grid; it never steps an optimiser itself.

Per step: ``StepGuard.zero_grad`` -> ``stage.train_step`` (forward + backward over ``accumulation``
micro-batches) -> ``StepGuard.apply`` (all losses and gradient norms finite: clip, step every optimiser;
else skip the whole step) -> EMA update -> ``stage.after_update``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.images import SkipCounter
from ..data.shards import ShardStream
from ..devices import resolve_precision
from ..io import VQForgeError
from . import distributed as D
from .checkpoint import LAST, Checkpoint, RunDir, append_debug_line, resume_checkpoint, write_debug_text
from .divergence import diverged_message, unsafe_to_save
from .console import Console, MetricLogger, format_duration, format_metrics
from .numerics import EMA, StepGuard
from .stage import Context, RunOptions, RunResult, Stage, StepOutput
from .settings import OldValues, TrainSettings, config_from_data, override, resolve_lr
from .stream import (BatchStream, ResumableSampler, ShardBatchStream, gather_rng_states, seed_everything,
                     set_rng_state)


def configure(cfg: Any, ckpt: Checkpoint | None, cls: type, old: OldValues, source: Path,
              overrides: list[str] | tuple[str, ...] = (), settings: dict[str, Any] | None = None) -> Any:
    """The run config of one call: ``cfg``, or (resuming without one) the checkpoint's, then dotted
    ``overrides`` (older names read with a notice) and direct ``settings`` replacements of ``train`` fields
    (paths and names that must not pass through YAML parsing)."""
    if cfg is None:
        if ckpt is None:
            raise VQForgeError("a new run needs a config (--config FILE)")
        cfg = config_from_data(cls, ckpt.train_config, old, source)
    cfg = override(cfg, overrides, old)
    if settings:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **settings))
    return cfg


def run(stage: Stage, cfg: Any, run_dir: RunDir, ckpt: Checkpoint | None, options: RunOptions = RunOptions()
        ) -> RunResult:
    """Train ``stage`` with the run config ``cfg`` (its ``train`` section: :class:`TrainSettings`) in
    ``run_dir``, continuing ``ckpt`` when given. Works in one process or under ``torchrun``."""
    if options.max_steps is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=options.max_steps))
    cfg.train.check()
    dist = D.setup_distributed(cfg.train.device)
    try:
        return _Loop(stage, cfg, run_dir, ckpt, options, dist).run()
    finally:
        D.teardown_distributed(dist)


class _Loop:
    """One call of :func:`run` (state shared by the schedule's jobs)."""

    def __init__(self, stage: Stage, cfg: Any, run: RunDir, ckpt: Checkpoint | None, options: RunOptions,
                 dist: D.DistInfo):
        self.stage, self.run_dir, self.options, self.dist = stage, run, options, dist
        s: TrainSettings = cfg.train
        lr = resolve_lr(s, dist.world_size)
        self.cfg = dataclasses.replace(cfg, train=dataclasses.replace(s, learning_rate=lr))
        self.s: TrainSettings = self.cfg.train
        self.console = Console(stage.title, dist.is_main, options.quiet, options.json)
        self.ctx = Context(run, dist, self.s, resolve_precision(self.s.precision, dist.device), lr, self.console)
        seed_everything(self.s.seed)  # the same initial weights on every rank
        stage.build(self.ctx, ckpt)
        self.cfg = stage.finalize_config(self.cfg)
        seed_everything(self.s.seed + dist.rank)
        self.step = 0
        self.ema = EMA(stage.model, self.s.ema_decay) if self.s.ema_decay > 0 else None
        self.stream: BatchStream | ShardBatchStream
        if isinstance(stage.train_data, ShardStream):  # tar shards: split by rank and worker, streamed
            stage.train_data.place(self.s.seed, dist.rank, dist.world_size)
            self.stream = ShardBatchStream(stage.train_data, self.s.batch_size, self.s.workers, dist,
                                           pin_memory=dist.device.type == "cuda", name=self.s.data or "training data")
        else:
            sampler = ResumableSampler(len(stage.train_data), shuffle=True, seed=self.s.seed, rank=dist.rank,
                                       world_size=dist.world_size, drop_last=True, with_seeds=True)
            self.stream = BatchStream(stage.train_data, self.s.batch_size, sampler, self.s.workers,
                                      pin_memory=dist.device.type == "cuda", name=self.s.data or "training data")
        self.best: tuple[int, float] | None = None
        self.history: list[float] = []
        if ckpt is not None:
            self._restore(ckpt)
        self.skips = SkipCounter()
        self.guard = StepGuard(stage.optimizers, stage.buffer_modules, self.s.grad_clip, self.s.max_nonfinite, dist)
        self.ctx.next_batch = self._next_batch
        self.last_val: dict[str, float] = {}
        self.ema_model: nn.Module | None = None
        self.unconfirmed: tuple[Path, int] | None = None  # a checkpoint (and its step) whose next step has not run
        self.good_step: int | None = None  # the step checkpoints/last_good.pt holds
        if ckpt is not None and run.resumed_from is not None:
            self.unconfirmed = (run.resumed_from, int(ckpt.step))

    # ------------------------------------------------------------------------------------ set-up
    def _restore(self, ckpt: Checkpoint) -> None:
        st = self.stage
        try:
            st.model.load_state_dict(ckpt.model)
            for name, (opt, _) in st.optimizers.items():
                configured = [g["lr"] for g in opt.param_groups]
                opt.load_state_dict(ckpt.optimizers[name])
                for g, lr in zip(opt.param_groups, configured):  # a resume with another learning rate uses it
                    g["lr"] = lr
            if self.ema is not None and ckpt.ema:
                self.ema.load_state_dict(ckpt.ema)
            st.load_extra(ckpt)
        except (KeyError, RuntimeError, ValueError) as e:
            raise VQForgeError(f"{self.run_dir.last}: cannot resume from this checkpoint "
                               f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        self.step = int(ckpt.step)
        if ckpt.data:
            self.stream.load_state_dict(ckpt.data)
        rng = ckpt.rng or []
        if len(rng) == self.dist.world_size:
            set_rng_state(rng[self.dist.rank])
        elif self.dist.is_main:
            self.console.line(f"vqforge: {self.run_dir.last}: saved with {len(rng)} processes, resuming with "
                              f"{self.dist.world_size}; random streams restart from the seed", always=True)
        best = ckpt.extra.get("best")
        if isinstance(best, dict) and "step" in best and math.isfinite(float(best["value"])):
            self.best = (int(best["step"]), float(best["value"]))  # a NaN "best" (older runs) is no best at all

    def _next_batch(self) -> dict[str, Any]:
        batch = next(self.stream)
        if os.environ.get("VQFORGE_DEBUG_SAMPLES") and isinstance(self.stream, ShardBatchStream):
            append_debug_line(self.run_dir, f"samples_rank{self.dist.rank}.jsonl",
                              json.dumps({"step": self.step, "keys": self.stream.last_keys}))
        if self.skips.update(batch) and self.dist.is_main:
            self.console.line(f"vqforge: skipped {len(self.skips)} unreadable image(s) so far (named in the "
                              f"warnings above; counted as data/skipped_images)", always=True)
        return batch

    # ------------------------------------------------------------------------------------ the loop
    def run(self) -> RunResult:
        s, dist, run = self.s, self.dist, self.run_dir
        if dist.is_main:
            run.remove_partial_writes()
            run.write_config(self.cfg)
        if self.step >= s.max_steps:
            self.console.summary([f"vqforge: {run.path}: already at step {self.step} >= max_steps {s.max_steps}; "
                                  f"nothing to do (raise it with --max-steps)"], self._result("").record())
            return self._result("")
        self.ctx.ddp_model = D.wrap_ddp(self.stage.model, dist)
        self.logger = MetricLogger(run.path, enabled=dist.is_main, resume_step=self.step if self.step else None)
        self.console.start(s.max_steps, self.step, self._header())
        t0, start_step = time.monotonic(), self.step
        deadline = t0 + self.options.time_limit if self.options.time_limit else None
        stopped_by, saved, validated = "", False, -1
        self.stage.model.train()
        try:
            if self.step == 0 and s.val_every > 0:  # the untrained baseline
                self._validate()
                validated = 0
            with D.StopRequest() as stop:
                while self.step < s.max_steps:
                    self._one_step()
                    validated, saved = self._jobs(validated)
                    out_of_time = deadline is not None and time.monotonic() > deadline
                    stop_after = self.options.stop_after is not None and self.step >= self.options.stop_after
                    if stop.should_stop(dist) or D.any_rank(out_of_time or stop_after, dist):
                        stopped_by = stop.signal_name or ("time limit" if out_of_time else
                                                          "stop_after" if stop_after else "signal")
                        break
                best = False
                if validated != self.step:
                    self._validate()
                    best = self._improved()
                if not saved or stopped_by:
                    self._save(best=best)
        finally:
            self.console.close()
            self.logger.close()
        if os.environ.get("VQFORGE_DEBUG_STATE_HASH"):
            write_debug_text(run, f"state_hash_rank{dist.rank}.txt",
                             " ".join(state_hash(m) for m in self.stage.state_modules()) + "\n")
        result = self._result(stopped_by)
        self.console.summary(self._summary(result, time.monotonic() - t0, self.step - start_step), result.record())
        return result

    def _one_step(self) -> None:
        stage, s = self.stage, self.s
        self.guard.zero_grad()
        out = stage.train_step(self.ctx, self.step)
        applied, norms, why = self.guard.apply(out.losses, self.step)
        self.step += 1
        if self.unconfirmed is not None:  # this step's losses came from the weights that checkpoint holds
            if applied and self.dist.is_main:
                self.run_dir.keep_good(self.unconfirmed[0])
                self.good_step = self.unconfirmed[1]
            self.unconfirmed = None
        if applied:
            if self.ema is not None:
                self.ema.update(stage.model)
            stage.after_update(self.ctx)
        else:
            self.console.line(f"vqforge: step {self.step}: non-finite {why}; step skipped, weights unchanged "
                              f"({self.guard.in_a_row} in a row, stop at {s.max_nonfinite})", always=True)
            if self.guard.in_a_row >= s.max_nonfinite:
                raise VQForgeError(self._diverged(why))
        first = next(iter(out.losses.values()), None)
        self.console.advance({"loss": f"{float(first):.4f}"} if first is not None else None)
        if self.dist.is_main and s.log_every > 0 and self.step % s.log_every == 0:
            logs = {k: float(v) for k, v in out.logs.items()}
            logs.update({"train/lr": self._lr(), "data/skipped_images": len(self.skips),
                         "train/skipped_steps": self.guard.skipped})
            for i, (name, norm) in enumerate(norms.items()):
                logs["train/grad_norm" if i == 0 else f"train/grad_norm_{name}"] = norm
            now = time.monotonic()
            last = getattr(self, "_last_log", None)
            if last is not None:
                logs["train/steps_per_s"] = (self.step - last[0]) / max(now - last[1], 1e-9)
            self._last_log = (self.step, now)
            self.logger.log(self.step, logs)

    def _jobs(self, validated: int) -> tuple[int, bool]:
        """The step's periodic jobs; returns (last validated step, whether a checkpoint was just saved)."""
        s, step = self.s, self.step

        def due(n: int) -> bool:
            return n > 0 and step % n == 0

        if self.dist.is_main and due(s.preview_every):
            with self._fork_rng():
                self.stage.preview(self.ctx, step, self.run_dir.images / f"{self.stage.preview_name}_{step:07d}.png")
            self.stage.model.train()
        best = False
        if due(s.val_every):
            self._validate()
            validated, best = step, self._improved()
        if due(s.checkpoint_every) or due(s.keep_every) or best:
            self._save(keep=due(s.keep_every), best=best)
            return validated, True
        return validated, False

    # ------------------------------------------------------------------------------------ jobs
    def _validate(self) -> None:
        if self.dist.is_main:
            stage = self.stage
            with self._fork_rng():
                metrics = dict(stage.validate(self.ctx, stage.model))
                if self.ema is not None and metrics:  # the averaged weights too (what vqforge.load returns)
                    if self.ema_model is None:
                        import copy

                        self.ema_model = copy.deepcopy(stage.model)
                    self.ema.copy_to(self.ema_model)
                    ema_val = stage.validate(self.ctx, self.ema_model)
                    metrics.update({k.replace("val/", "val_ema/", 1): v for k, v in ema_val.items()})
            stage.model.train()
            self.last_val = metrics
            if metrics:
                self.logger.log(self.step, metrics)
                self.console.line(f"step {self.step}: validation {format_metrics(metrics, self.stage.shown)}")
        D.barrier(self.dist)

    def _diverged(self, why: str) -> str:
        rule = resolve_lr(dataclasses.replace(self.s, learning_rate=0.0), self.dist.world_size)
        return diverged_message(self.run_dir, self.stage.trainer, self.step, self.guard.in_a_row, why, self._lr(),
                                rule, self.good_step)

    def _improved(self) -> bool:
        """Whether the last validation is the best so far (agreed over ranks); warns on a worsening streak.
        A non-finite value is never the best (it compares as worst), and any finite one beats none."""
        better = False
        key = self._best_key()
        if self.dist.is_main and key and key in self.last_val and self.step > 0:
            value = self.last_val[key]
            sign = 1.0 if self.stage.best_metric and self.stage.best_metric[1] == "min" else -1.0
            better = math.isfinite(value) and (self.best is None or sign * value < sign * self.best[1])
            if better:
                self.best = (self.step, value)
            self._watch_trend(key, value, sign)
        return D.any_rank(better, self.dist)

    def _watch_trend(self, key: str, value: float, sign: float) -> None:
        self.history.append(value)
        p = self.s.patience
        recent = self.history[-(p + 1):]
        worse = len(recent) == p + 1 and all(sign * b > sign * a for a, b in zip(recent, recent[1:]))
        if p > 0 and worse and self.best is not None:
            trail = " -> ".join(f"{v:.4g}" for v in recent)
            self.console.line(f"vqforge: warning: {key} got worse for {p} evaluations in a row ({trail}): the "
                              f"model may be overfitting; checkpoints/best.pt holds step {self.best[0]} "
                              f"({key} {self.best[1]:.4g})", always=True)
            self.logger.log(self.step, {"train/val_worse_streak": p})

    def _best_key(self) -> str | None:
        bm = self.stage.best_metric
        if bm is None:
            return None
        return bm[0].replace("val/", "val_ema/", 1) if self.ema is not None else bm[0]

    def _save(self, keep: bool = False, best: bool = False) -> None:
        st = self.stage
        unsafe = unsafe_to_save(self.stage.model, self.ema, self.last_val)
        if unsafe:  # the previous checkpoint (and best.pt) stay as they are
            kept = f"checkpoints/{LAST} keeps the previous one" if self.run_dir.has_checkpoint() else "none written"
            self.console.line(f"vqforge: step {self.step}: checkpoint not saved ({unsafe}); {kept}", always=True)
            return
        ckpt = Checkpoint(
            kind=st.kind, trainer=st.trainer, model_config=st.model.config, step=self.step,
            model={k: v.detach().cpu() for k, v in st.model.state_dict().items()},
            train_config=self.cfg, optimizers={n: o.state_dict() for n, (o, _) in st.optimizers.items()},
            ema=self.ema.state_dict() if self.ema is not None else None, rng=gather_rng_states(self.dist),
            data=self.stream.state_dict(), extra=st.checkpoint_extra())
        if self.best is not None:
            ckpt.extra["best"] = {"step": self.best[0], "value": self.best[1], "metric": self._best_key()}
        if self.dist.is_main:
            self.run_dir.save(ckpt, keep=keep, best=best)
            self.unconfirmed = (self.run_dir.last, self.step)  # good once the next step's losses are finite

    # ------------------------------------------------------------------------------------ helpers
    def _fork_rng(self):
        # validation and previews must not move the training RNG (exact resume after an interruption)
        return torch.random.fork_rng(devices=[self.dist.device] if self.dist.device.type == "cuda" else [])

    def _lr(self) -> float:
        opt = next(iter(self.stage.optimizers.values()))[0]
        return float(opt.param_groups[0]["lr"])

    def _header(self) -> str:
        s, d = self.s, self.dist
        precision = "bf16" if self.ctx.dtype == torch.bfloat16 else "fp32"
        procs = f" x {d.world_size} processes" if d.distributed else ""
        what = f"step {self.step} -> {s.max_steps}" if self.step else f"{s.max_steps} steps"
        return (f"{self.run_dir.path}: {what}, {d.device.type}{procs}, {precision}, batch {s.batch_size}"
                f"{f' x {s.accumulation} accumulated' if s.accumulation > 1 else ''}, lr {self.ctx.lr:.3g}")

    def _result(self, stopped_by: str) -> RunResult:
        return RunResult(self.step, stopped_by, self.run_dir.path, self.last_val,
                         self.best[0] if self.best else None, self.guard.skipped, len(self.skips))

    def _summary(self, r: RunResult, seconds: float, steps: int) -> list[str]:
        run = self.run_dir.path
        rate = f" in {format_duration(seconds)} ({steps / max(seconds, 1e-9):.2f} steps/s)" if steps else ""
        if r.stopped_by:
            why = {"time limit": "time limit reached", "stop_after": "stopped as asked"}.get(
                r.stopped_by, f"{r.stopped_by} received")
            head = f"vqforge: {why}; saved {self.run_dir.last} at step {r.step}{rate}."
        else:
            head = f"vqforge: trained to step {r.step}{rate}."
        lines = [head]
        if r.last_val:
            lines.append(f"  validation: {format_metrics(r.last_val, self.stage.shown)}")
        if r.best_step is not None and self.best is not None:
            lines.append(f"  best: step {r.best_step} ({self._best_key()} {self.best[1]:.4g}) in {self.run_dir.best}")
        if r.skipped_steps or r.skipped_images:
            lines.append(f"  skipped: {r.skipped_steps} non-finite step(s), {r.skipped_images} unreadable image(s)")
        lines.append(f"  run directory: {run}  (vqforge.load({str(run)!r}))")
        nxt = ([f"vqforge train {self.stage.trainer} --resume {run}"] if r.stopped_by else []) + self.stage.next_steps(run)
        if not r.stopped_by:
            nxt.append(f"vqforge train {self.stage.trainer} --resume {run} --max-steps {r.step * 2}")
        lines += ["  next: " + nxt[0]] + ["        " + n for n in nxt[1:]] if nxt else []
        return lines


def state_hash(module: nn.Module) -> str:
    """SHA-256 over a module's parameters and buffers (to check that DDP ranks agree)."""
    h = hashlib.sha256()
    for k, v in D.unwrap(module).state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


__all__ = ["run", "configure", "resume_checkpoint", "state_hash", "Context", "RunOptions", "RunResult", "Stage",
           "StepOutput"]
