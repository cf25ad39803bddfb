"""``mcit_bench.run(config)``: one run as a library call, on one process or several.

It is what ``mcit-bench run``, ``sweep``, ``ceiling`` and ``tune`` call for every run: validation and planning
(``runner.plan_run``: nothing is written before it passes), the run folder's lock, the run itself (here, or on
``--devices`` x ``--num-nodes`` processes started by ``distributed.launch``, or joining those of torchrun /
SLURM), and SIGINT / SIGTERM: the run stops at the next safe point, the lock is released and
``interrupt.Interrupted`` (exit code 130 / 143) says what is safe on disk and the command that resumes.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .errors import RunError, UserError

if TYPE_CHECKING:  # only for the annotations: importing the runner pulls in numpy and the registry
    import numpy as np

    from .config import RunConfig
    from .distributed import Ranks
    from .engine.runner import Plan


@dataclass(frozen=True)
class RunResult:
    """A finished run: its folder, ``summary.json``'s content and the accuracy matrix (rank 0; the other ranks
    of a multi-process run get an empty summary and no matrix)."""

    run_dir: Path
    summary: dict[str, Any]
    matrix: "np.ndarray | None"  # (T+1) x T, stage rows, task columns in training order; NaN = not evaluated
    tasks: list[str]
    plan: "Plan"
    rank: int = 0
    world_size: int = 1


class RankStopped(RunError):
    """A rank other than 0 of a torchrun / SLURM run whose rank 0 refused the configuration (rank 0 says why)."""

    exit_code = 2


@dataclass(frozen=True)
class _Hints:
    resume: str  # the command that resumes the run, in the interruption line
    dead_rank: str  # how to go on, at the end of a dead rank's message


def run(config: "RunConfig", progress: bool = True, *, command: Sequence[str] | None = None,
        command_resumes: bool = False, on_plan: Callable[["Plan", int], None] | None = None,
        on_stage: Callable[[int, dict[str, Any]], None] | None = None, lock_what: str = "run") -> RunResult:
    """Plan, lock and run (or resume) ``config``; returns the result once the run is complete.

    ``command``: the ``mcit-bench`` arguments that started this run (the CLI's argv), named by the hints when
    the run is interrupted or a rank dies, with ``--resume`` added unless ``command_resumes`` (a command that
    continues by itself, e.g. ``ceiling``); without it the hints name a ``mcit-bench run ... --resume``
    composed from ``config``. ``on_plan(plan, processes)`` is called on rank 0 once every check passed, before
    any work; ``on_stage`` as in ``runner.execute``; ``lock_what`` names the holder in the folder's lock.
    Raises ``UserError`` (bad input, nothing written), ``RunError`` (the run cannot go on; ``FolderLocked``:
    another job writes the folder) or ``interrupt.Interrupted``; the caller's ``config`` is never modified.
    """
    from . import distributed

    hints = _hints(config, command, command_resumes)
    ranks = distributed.detect(config.devices, config.num_nodes, config.strategy)
    if ranks.world_size <= 1:
        return _run_one(config, progress, hints, on_plan, on_stage, lock_what)
    return _run_ranks(config, ranks, progress, hints, on_plan, on_stage, lock_what)


def _run_one(config: "RunConfig", progress: bool, hints: _Hints, on_plan: Callable[["Plan", int], None] | None,
             on_stage: Callable[[int, dict[str, Any]], None] | None, lock_what: str) -> RunResult:
    from .engine import runner
    from .engine.interrupt import Interrupted, deferred, explain
    from .rundir.run_lock import lock_unless_secondary

    plan = runner.plan_run(config)  # every check that can fail on bad input happens here, before any write
    if on_plan is not None:
        on_plan(plan, 1)
    try:
        with lock_unless_secondary(plan.run_dir, lock_what), deferred():  # one writer per run folder
            summary = runner.execute(plan, progress=progress, on_stage=on_stage)
    except Interrupted as exc:  # the lock is released: say what is safe and how to resume
        raise explain(exc, plan.run_dir, hints.resume) from None
    return _result(plan, summary, 0, 1)


def _run_ranks(config: "RunConfig", ranks: "Ranks", progress: bool, hints: _Hints,
               on_plan: Callable[["Plan", int], None] | None,
               on_stage: Callable[[int, dict[str, Any]], None] | None, lock_what: str) -> RunResult:
    """One launch for the whole run on several processes (see ``mcit_bench.distributed``)."""
    import contextlib
    import os

    import torch

    from . import distributed
    from .engine import runner
    from .engine.interrupt import Interrupted, deferred, explain, ignore_in_worker
    from .rundir.run_lock import lock_unless_secondary

    if ranks.worker:
        ignore_in_worker()  # rank 0 stops on the signal and then stops this process
    saved_env = dict(os.environ)
    threads = torch.get_num_threads()  # the process group shares the cores out; a caller's later runs get them back
    launcher = None
    held = contextlib.ExitStack()  # rank 0's lock on the run folder, taken before any worker starts
    try:
        if ranks.launcher:
            plan = runner.plan_run(config)  # validation, the run-folder check and --resume planning: once, here
            held.enter_context(lock_unless_secondary(plan.run_dir, lock_what))
            from .backbones import backbone_path

            backbone_path(config.backbone, progress=progress)  # built once, before the ranks read it
            launcher = distributed.launch(ranks, config, hints.dead_rank)
        distributed.init_process_group(ranks, config.accelerator)
        problem = None
        if ranks.rank == 0 and not ranks.launcher and not ranks.worker:  # torchrun / SLURM: rank 0 checks
            try:
                plan = runner.plan_run(config)
                held.enter_context(lock_unless_secondary(plan.run_dir, lock_what))
            except (UserError, RunError) as exc:
                problem = str(exc)
        problem = distributed.broadcast(problem)  # every rank learns whether rank 0's checks passed
        if problem is not None:
            if ranks.rank == 0:
                raise UserError(problem)
            raise RankStopped(problem)
        if ranks.rank != 0:
            plan = runner.plan_run(config, check_existing=False)
        if ranks.rank == 0 and on_plan is not None:
            on_plan(plan, ranks.world_size)
        try:
            with deferred() if ranks.rank == 0 else contextlib.nullcontext():
                summary = runner.execute(plan, progress=progress, on_stage=on_stage)
        except Interrupted as exc:  # the workers are stopped and the lock released below (finally)
            raise explain(exc, plan.run_dir, hints.resume) from None
        except Exception:
            # a collective that fails because a worker died: say which rank and how to go on, not the traceback
            message = launcher.failure(wait=5.0) if launcher is not None else None
            if message is None:
                raise
            launcher.stop()
            raise RunError(message) from None
        if launcher is not None and launcher.wait() != 0:
            raise UserError("a worker rank failed at the end of the run; see its messages above")
        return _result(plan, summary, ranks.rank, ranks.world_size)
    finally:
        if launcher is not None:
            launcher.stop()
        held.close()
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()  # the rank variables must not leak into a later run of this process (a sweep, tests)
        os.environ.update(saved_env)
        torch.set_num_threads(threads)


def _result(plan: "Plan", summary: dict[str, Any], rank: int, world_size: int) -> RunResult:
    matrix = None
    if rank == 0:
        from .matrix_io import read_matrix_csv

        matrix = read_matrix_csv(plan.run_dir / "accuracy.csv")[0]
    return RunResult(plan.run_dir, summary, matrix, list(plan.order), plan, rank, world_size)


def _hints(config: "RunConfig", command: Sequence[str] | None, command_resumes: bool) -> _Hints:
    if command is not None:
        argv = list(command)
        if command_resumes:
            return _Hints("mcit-bench " + shlex.join(argv), "run the same command to continue")
        resume = argv if "--resume" in argv else [*argv, "--resume"]
        return _Hints("mcit-bench " + shlex.join(resume), "run the same command with --resume to continue")
    composed = run_command(config)
    if composed is None:  # a configuration no `mcit-bench run` expresses (tuning stream, a task subset)
        return _Hints("mcit_bench.run with the same configuration and resume=True",
                      "call mcit_bench.run again with resume=True to continue")
    text = "mcit-bench " + shlex.join(composed)
    return _Hints(text, f"to continue, run: {text}")


def run_command(config: "RunConfig") -> list[str] | None:
    """The ``mcit-bench run`` arguments that resume ``config`` (its fields that differ from the defaults,
    which are the CLI's), or None when no command line expresses it (a tuning-stream or task-subset run)."""
    import json

    from .config import RunConfig

    if config.data_stream != "report" or config.task_subset:
        return None
    default = {f.name: f.default for f in fields(RunConfig) if f.name != "method"}
    flags = {"order": "--order", "benchmark": "--benchmark", "backbone": "--backbone", "seed": "--seed",
             "preset": "--preset", "output": "--output", "eval_mode": "--eval", "accelerator": "--accelerator",
             "devices": "--devices", "num_nodes": "--num-nodes", "strategy": "--strategy",
             "precision": "--precision", "logger": "--logger", "data_root": "--data-root",
             "image_root": "--image-root", "tuned_file": "--tuned"}
    argv = ["run", "--method", config.method]
    for name, flag in flags.items():
        value = getattr(config, name)
        if value is not None and str(value) != str(default[name]):
            argv += [flag, str(value)]
    argv.append("--resume")
    for task, variant in config.scorer_variants.items():
        argv += ["--scorer-variant", f"{task}={variant}"]
    for key, value in config.overrides.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]  # JSON scalars and lists read back as YAML
    return argv
