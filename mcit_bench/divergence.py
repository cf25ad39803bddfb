"""A non-finite training loss stops the run at once: a diverged model must never become a result.

The error names where it happened (stage, task, step), the settings that drive the update size, and
how to continue from the last completed stage with other settings (``--resume --set lr=...``).
"""
from __future__ import annotations

import math
from typing import Any

from .errors import RunError
from .resume import resumable

DRIVING = ("lr", "grad_clip", "warmup_ratio", "weight_decay", "batch_size")


class Diverged(RunError):
    """The training loss became NaN or infinite."""


def driving_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """Learning rates first, then the other settings that scale an update."""
    rates = {k: v for k, v in hparams.items() if "lr" in k.split("_") and resumable(k)}
    return {**rates, **{k: hparams[k] for k in DRIVING if k in hparams and k not in rates}}


def check_losses(losses: dict[str, float], stage: int, task: str, step: int, steps: int,
                 hparams: dict[str, Any]) -> None:
    """Raise Diverged when any loss is NaN or infinite (``losses``: name -> float)."""
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if not bad:
        return
    values = ", ".join(f"{k}={v}" for k, v in bad.items())
    settings = ", ".join(f"{k}={v}" for k, v in driving_hparams(hparams).items())
    kept = f"stages 1-{stage - 1} are kept" if stage > 1 else "no stage was completed"
    raise Diverged(f"training diverged: non-finite loss ({values}) at stage {stage} (task {task!r}), step {step} "
                   f"of {steps}, with {settings}; {kept} and stage {stage} is not marked trained: rerun the same "
                   f"command with --resume --set lr=<smaller> to continue from there")
