"""What keeps a diverging run from poisoning its own checkpoints (used by :mod:`vqforge.train.loop`).

* :func:`unsafe_to_save`: a state with NaN / infinite weights (or averaged weights) or a non-finite validation
  never becomes a checkpoint; ``best.pt`` never takes a non-finite value (the loop's ``_improved``).
* ``checkpoints/last_good.pt`` (:meth:`RunDir.keep_good`): the newest checkpoint whose next step had finite
  losses; finite weights that only blow up one step later are caught there.
* :func:`diverged_message`: the run-ending line names that checkpoint and what to change.
"""

from __future__ import annotations

import math

import torch

from .checkpoint import GOOD, RunDir


def unsafe_to_save(model: torch.nn.Module, ema, last_val: dict) -> str:
    """Why the current state must not become a checkpoint ("" when it may): weights or the averaged weights
    holding NaN / infinity, or a non-finite last validation."""
    bad_val = [k for k, v in last_val.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad_val:
        return f"validation {bad_val[0]} = {last_val[bad_val[0]]}"
    for state in [model.state_dict()] + ([ema.state_dict()] if ema is not None else []):
        for k, v in state.items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                return f"weight {k} holds NaN or infinity"
    return ""


def diverged_message(run: RunDir, trainer: str, step: int, in_a_row: int, why: str, lr: float, rule_lr: float,
                     good_step: int | None) -> str:
    """The line a run stops with after ``in_a_row`` non-finite steps: the checkpoint to resume from (the last
    one whose next step was finite) and a learning rate to resume with (the original's scaling rule when that
    is lower than this run's, else a tenth of it)."""
    change = f"train.learning_rate={rule_lr if rule_lr < lr else lr / 10:.3g}"
    head = (f"stopped at step {step}: {in_a_row} steps in a row had non-finite losses or gradients (last: {why}); "
            f"nothing from them was saved. ")
    tips = f" (learning rate here {lr:.3g}; train.grad_clip=1.0 or train.precision=fp32 also help)"
    good = run.checkpoint_dir / GOOD
    if good.is_file():
        at = good_step if good_step is not None else run.load(good).step  # kept by an earlier call
        return (head + f"Resume from the last good checkpoint (step {at}) with a lower learning rate: "
                f"vqforge train {trainer} --resume {good} {change}{tips}")
    return head + f"No checkpoint was followed by a finite step: start again with a lower learning rate ({change}){tips}"
