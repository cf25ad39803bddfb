"""One progress display for a whole run: stage k/T, task, step, loss and the run's ETA.

On a terminal it is a single line redrawn at most ``interval`` seconds apart (so a training step
pays one clock read, nothing more); elsewhere (a pipe, a log) a plain line every ``plain_interval``
seconds. After each stage one permanent line gives that stage's scores. The ETA counts the training
steps and evaluation cells still to run in this process, each at the rate measured so far.
"""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def format_duration(seconds: float) -> str:
    """``42 s``, ``3:07`` or ``1:02:03``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class RunProgress:
    """Live state of a run, drawn on ``stream`` (stage result lines go to ``out``)."""

    def __init__(self, task_names: list[str], train_steps: dict[int, int], eval_cells: dict[int, int],
                 enabled: bool = True, stream: TextIO | None = None, out: TextIO | None = None,
                 interval: float = 0.25, plain_interval: float = 30.0) -> None:
        self.task_names = task_names
        self.train_left = dict(train_steps)  # stage -> steps still to run
        self.eval_left = dict(eval_cells)  # stage -> cells still to evaluate
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.out = out or sys.stdout
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.live else plain_interval
        self.train_seconds = self.eval_seconds = 0.0
        self.steps_done = self.cells_done = 0
        self.scores: dict[int, dict[str, float]] = {}
        self._mark = self._drawn = self._stage_mark = time.monotonic()
        self._shown = False
        self.line = ""

    @classmethod
    def for_run(cls, plan: Any, state: Any, strategy: Any, last_trained: int, enabled: bool) -> "RunProgress":
        """The work a run (or its resumption) still has to do: which stages train, which cells are left."""
        from .evaluation import stages_to_evaluate

        n = len(plan.order)
        steps = {stage: strategy.train_steps(stage - 1) for stage in range(last_trained + 1, n + 1)}
        train = {stage: k for stage, k in steps.items() if k > 0}
        cells = {stage: sum(state.cell(stage, plan.order[col]) is None
                            for col in stages_to_evaluate(stage, n, plan.config.eval_mode,
                                                          strategy.evaluates_stage(stage)))
                 for stage in range(n + 1)}
        return cls(list(plan.order), train, cells, enabled=enabled)

    # ------------------------------------------------------------------ events
    def _elapsed(self) -> float:
        """Seconds since the previous event: the time the current event took."""
        now = time.monotonic()
        elapsed, self._mark = now - self._mark, now
        return elapsed

    def train_step(self, stage: int, step: int, loss: Any = None) -> None:
        """One optimizer step of ``stage`` (``step`` counted from 1); ``loss`` is read only when drawn."""
        self.train_seconds += self._elapsed()
        self.steps_done += 1
        self.train_left[stage] = max(0, self.train_left.get(stage, 0) - 1)
        if self.enabled and self._mark - self._drawn >= self.interval:
            total = self.train_left[stage] + step
            value = loss.get("loss") if isinstance(loss, dict) else loss
            loss_text = f" · loss {float(value):.3f}" if value is not None else ""
            self.draw(f"{self._stage_label(stage)} · step {step}/{total}{loss_text}")

    def cell_done(self, stage: int, task: str, score: float) -> None:
        self.eval_seconds += self._elapsed()
        self.cells_done += 1
        self.eval_left[stage] = max(0, self.eval_left.get(stage, 0) - 1)
        self.scores.setdefault(stage, {})[task] = score
        if self.enabled and self._mark - self._drawn >= self.interval:
            done = len(self.scores[stage])
            self.draw(f"{self._stage_label(stage)} · evaluated {task} ({done}/{done + self.eval_left[stage]})")

    def stage_done(self, stage: int) -> None:
        """One permanent line with the stage's scores (nothing for a stage that had nothing left to do)."""
        scores = self.scores.get(stage)
        seconds, self._stage_mark = time.monotonic() - self._stage_mark, time.monotonic()
        if not self.enabled or not scores:
            return
        self.clear()
        cells = "  ".join(f"{name} {value:.1f}" for name, value in scores.items())
        print(f"  {self._stage_label(stage)} ({format_duration(seconds)}): {cells}", file=self.out, flush=True)

    def close(self) -> None:
        if self.enabled:
            self.clear()

    # ------------------------------------------------------------------ drawing
    def _stage_label(self, stage: int) -> str:
        n = len(self.task_names)
        task = "zero-shot" if stage == 0 else self.task_names[stage - 1]
        return f"stage {stage}/{n} {task}"

    def eta_seconds(self) -> float | None:
        """Seconds left at the measured rates; None while a rate that is still needed is unknown."""
        steps, cells = sum(self.train_left.values()), sum(self.eval_left.values())
        if (steps and not self.steps_done) or (cells and not self.cells_done):
            return None
        step_rate = self.train_seconds / self.steps_done if self.steps_done else 0.0
        cell_rate = self.eval_seconds / self.cells_done if self.cells_done else 0.0
        return steps * step_rate + cells * cell_rate

    def draw(self, text: str) -> None:
        eta = self.eta_seconds()
        self.line = f"{text} · run ETA {format_duration(eta) if eta is not None else '--'}"
        self._drawn = time.monotonic()
        if self.live:
            self.stream.write("\r" + self.line + "\x1b[K")
            self._shown = True
        else:
            self.stream.write(self.line + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    # ------------------------------------------------------------------ Lightning
    def lightning_callback(self, stage: int) -> Any:
        """A Lightning Callback that reports each training step of ``stage`` to this display."""
        import lightning as L

        display = self

        class RunProgressCallback(L.Callback):
            def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                                   batch_idx: int) -> None:
                display.train_step(stage, trainer.global_step, outputs)

        return RunProgressCallback()
