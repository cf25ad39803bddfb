"""A non-finite training loss stops the run at once: a diverged model must never become a result.

A finite loss can tell the same (``LossHealth``): a language-model loss that sits at ln(vocabulary size)
(the uniform distribution: the model predicts nothing) after opening below it, or far above the first steps' loss, for
``health_window`` consecutive steps, stops the run the same way. Thresholds (hyper-parameters, ``--set``):
``health_window`` steps (0 = off), ``health_uniform_tol`` nats around ln(V), ``health_rise`` times the mean
loss of the first ``health_window`` steps.

The error names where it happened (stage, task, step), the settings that drive the update size, and
how to continue from the last completed stage with other settings (``--resume --set lr=...``).
"""
from __future__ import annotations

import math
from typing import Any

from ..errors import RunError
from ..rundir.resume import resumable

DRIVING = ("lr", "grad_clip", "warmup_ratio", "weight_decay", "batch_size")


class Diverged(RunError):
    """The training loss became NaN or infinite."""


def driving_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """Learning rates first, then the other settings that scale an update."""
    rates = {k: v for k, v in hparams.items() if "lr" in k.split("_") and resumable(k)}
    return {**rates, **{k: hparams[k] for k in DRIVING if k in hparams and k not in rates}}


def _stop(reason: str, stage: int, task: str, step: int, steps: int, hparams: dict[str, Any]) -> None:
    settings = ", ".join(f"{k}={v}" for k, v in driving_hparams(hparams).items())
    kept = f"stages 1-{stage - 1} are kept" if stage > 1 else "no stage was completed"
    raise Diverged(f"training diverged: {reason} at stage {stage} (task {task!r}), step {step} of {steps}, with "
                   f"{settings}; {kept} and stage {stage} is not marked trained: rerun the same command with "
                   f"--resume --set lr=<smaller> to continue from there")


class LossHealth:
    """Watches the finite ``lm`` loss of one stage: stuck at the uniform value, or risen far above its start."""

    def __init__(self, vocab_size: int | None, hparams: dict[str, Any]) -> None:
        self.window = int(hparams.get("health_window", 0) or 0)
        self.tol = float(hparams.get("health_uniform_tol", 0.02))
        self.rise = float(hparams.get("health_rise", 3.0))
        self.uniform = math.log(vocab_size) if vocab_size else None
        self.first: list[float] = []
        self.opening: float | None = None
        self.stuck = self.high = 0

    def check(self, loss: float, stage: int, task: str, step: int, steps: int, hparams: dict[str, Any]) -> None:
        if self.window <= 0:
            return
        if self.opening is None:
            self.opening = loss
        # A model that opens at the uniform value is untrained (a random-init backbone), not destroyed:
        # only a model that started below ln(V) and fell back to it is stopped.
        learned = self.uniform is not None and self.opening < self.uniform - self.tol
        at_uniform = learned and abs(loss - self.uniform) <= self.tol
        self.stuck = self.stuck + 1 if at_uniform else 0
        if self.stuck >= self.window:
            _stop(f"loss stuck at ln(vocabulary size) = {self.uniform:.4f} (the uniform distribution) for {self.window} "
                  f"steps (health_window; within health_uniform_tol={self.tol})", stage, task, step, steps, hparams)
        if len(self.first) < self.window:
            self.first.append(loss)
            return
        start = sum(self.first) / len(self.first)
        self.high = self.high + 1 if loss > self.rise * start else 0
        if self.high >= self.window:
            _stop(f"loss {loss:.4f} above {self.rise} x the first steps' mean {start:.4f} for {self.window} steps "
                  f"(health_rise, health_window)", stage, task, step, steps, hparams)


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
