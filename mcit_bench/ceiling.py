"""Single-task ceilings: a method trained on each task ALONE, from the untouched backbone, with the same
budget as in a continual run, and evaluated on that task.

The ceiling separates "this method cannot learn this task at this scale" from "this method forgets": a
continual run's diagonal (``mft``) is read against it, and ``fwd.finetune_reference`` (docs/reference.md, "Metrics")
uses it as the single-task reference f_i.

Layout: ``<root>/<benchmark>/<method>/ceiling-seed<S>/`` holds one ordinary run folder per task
(``<task>/``, a one-task order: stage 0 and stage 1) and ``ceiling.json`` / ``ceiling.csv`` with the
score per task. Each task's run resumes like any run, so an interrupted ceiling continues where it
stopped; tasks already complete are not run again.
"""
from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

from .rundir.atomic import atomic_write_json, atomic_write_text
from .config import RunConfig
from .errors import UserError

CEILING_FILE = "ceiling.json"


def ceiling_dir(root: str | Path, benchmark: str, method: str, seed: int) -> Path:
    return Path(root) / benchmark / method / f"ceiling-seed{seed}"


def plan_ceiling(cfg: RunConfig, tasks: list[str] | None = None, root: str | Path = "results/runs") -> tuple[list, Path]:
    """One validated run plan per task (every check that can fail on bad input happens here)."""
    from .engine.runner import STATE_FILE, plan_run

    probe = plan_run(replace(cfg, output=None, resume=False, order="1" if cfg.order is None else cfg.order))
    names = list(tasks) if tasks else list(probe.benchmark.task_names)
    unknown = [t for t in names if t not in probe.benchmark.task_names]
    if unknown:
        raise UserError(f"--tasks: unknown task(s) {', '.join(unknown)}; known: {', '.join(probe.benchmark.task_names)}")
    folder = Path(cfg.output) if cfg.output else ceiling_dir(root, probe.benchmark.name, probe.method_cls.name, cfg.seed)
    plans = []
    for name in names:
        run_dir = folder / name
        plans.append(plan_run(replace(cfg, output=str(run_dir), task_subset=[name],
                                      resume=(run_dir / STATE_FILE).exists())))
    return plans, folder


def run_ceiling(plans: list, folder: Path, progress: bool = True, command: list[str] | None = None) -> dict[str, Any]:
    """Train and evaluate each task alone (skipping complete ones); write ``ceiling.json`` and ``.csv``.

    Each task is one ``mcit_bench.run`` of its planned configuration; ``command`` (the ``mcit-bench ceiling``
    arguments, which continue by themselves) is what an interrupted ceiling says to rerun."""
    from .api import run
    from .engine.runner import RunState, STATE_FILE

    scores: dict[str, float] = {}
    zero_shot: dict[str, float] = {}
    seconds = 0.0
    summary: dict[str, Any] = {}
    for plan in plans:
        task = plan.order[0]
        state = RunState(plan.run_dir / STATE_FILE)
        if not state.data.get("complete"):
            if progress:
                print(f"ceiling: {plan.method_cls.name} on {task} alone", flush=True)
            summary = run(plan.config, progress=progress, command=command,
                          command_resumes=command is not None, lock_what="ceiling").summary
            state = RunState(plan.run_dir / STATE_FILE)
        scores[task] = float(state.cell(1, task)["score"])
        zero_shot[task] = float(state.cell(0, task)["score"])
        seconds += sum(state.data["seconds"]["train"].values()) + sum(state.data["seconds"]["eval"].values())
        if not summary:
            import json

            summary = json.loads((plan.run_dir / "summary.json").read_text())
    first = plans[0]
    result = {
        "kind": "ceiling",
        "method": first.method_cls.name,
        "benchmark": first.benchmark.name,
        "backbone": first.config.backbone,
        "backbone_checkpoint": summary.get("backbone_checkpoint"),
        "seed": first.config.seed,
        "preset": first.config.preset,
        "hparams": first.hparams,
        "tasks": list(scores),
        "scores": scores,
        "zero_shot": zero_shot,
        "mean": sum(scores.values()) / len(scores),
        "seconds": round(seconds, 3),
        "complete": True,
        "definition": "each task trained alone from the untouched backbone with the run's budget (steps_per_task), "
                      "scored on its own test split (stage 1 of a one-task run)",
    }
    atomic_write_json(folder / CEILING_FILE, result)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["task", "ceiling", "zero_shot"])
    for task, score in scores.items():
        writer.writerow([task, f"{score:.4f}", f"{zero_shot[task]:.4f}"])
    atomic_write_text(folder / "ceiling.csv", buf.getvalue())
    return result
