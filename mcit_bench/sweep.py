"""``mcit-bench sweep``: every (method, order, seed) combination through ``mcit_bench.run``.

Design (one library call per combination, in this process; no command line is rebuilt):

- everything is validated first: method names, orders, seeds, ``--set`` keys, and every
  combination's ``plan_run`` (an existing run folder whose config.yaml disagrees is an error), so a
  typo fails in a second, before any training;
- a run is *complete* when its ``state.json`` (or ``summary.json``) says ``complete: true``: it is
  skipped and never rerun; a run folder without that flag is resumed (``resume=True``: finished
  stages and evaluated cells are kept); a missing folder is a new run;
- each combination is one ``mcit_bench.run(config)`` (``api.py``): it plans again (another job may have
  moved the folder on since), holds the folder's lock (``run_lock.py``) and, with ``--devices N`` (and
  ``--num-nodes``), runs on N processes, this one being rank 0 and the others started by
  ``distributed.launch`` from the configuration; a folder another live job writes is skipped ("busy",
  exit code 1), so sweeps sharing a root split the work instead of writing the same folder;
- an ``Exception`` in one run (a dead rank included) is reported (traceback in ``<run folder>/error.log``)
  and the sweep goes on with the next; SIGINT / SIGTERM stop the current run at its next safe point and
  the sweep (exit code 130 / 143), and ``KeyboardInterrupt`` / ``SystemExit`` (e.g. from a
  ``runner.AFTER_STAGE_HOOKS`` drill) stop it too; rerunning the same command resumes it.

``--set KEY=VALUE`` applies to every selected method whose hyper-parameters have ``KEY`` (training
budget keys such as ``steps_per_task`` apply to all); a key no selected method knows is an error.
"""
from __future__ import annotations

import gc
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import UserError
from .rundir.atomic import write_error_file

ERROR_LOG = "error.log"


@dataclass
class SweepSpec:
    """What to sweep; the run options (benchmark, backbone, preset, ...) are shared by every run."""

    methods: str = "all"
    orders: str = "all"
    seeds: str = "0"
    root: str = "results/runs"
    overrides: dict[str, Any] = field(default_factory=dict)
    run_options: dict[str, Any] = field(default_factory=dict)  # RunConfig fields: benchmark, backbone, ...


@dataclass
class SweepItem:
    method: str
    order: str
    seed: int
    run_dir: Path
    status: str  # "complete" | "resume" | "new"
    detail: str
    plan: Any  # runner.Plan: the checks passed when the sweep was planned; mcit_bench.run gets its config


@dataclass
class SweepResult:
    done: list[SweepItem] = field(default_factory=list)
    skipped: list[SweepItem] = field(default_factory=list)
    failed: list[tuple[SweepItem, str]] = field(default_factory=list)
    busy: list[SweepItem] = field(default_factory=list)  # locked by another live job (a `run` or another sweep)


# ---------------------------------------------------------------- selection and validation

def _split(raw: str, what: str) -> list[str]:
    items = [x.strip() for x in str(raw).split(",") if x.strip()]
    if not items:
        raise UserError(f"--{what} {raw!r}: expected 'all' or a comma-separated list")
    return items


def select_methods(raw: str) -> list[str]:
    """Canonical method names: ``all`` = every registered method (plugins included)."""
    from .registry import get_method, list_methods

    if str(raw).strip().lower() == "all":
        return list_methods()
    names: list[str] = []
    for item in _split(raw, "methods"):
        name = get_method(item).name  # UserError naming the known methods
        if name not in names:
            names.append(name)
    return names


def select_orders(raw: str, benchmark: str | None = None) -> list[str]:
    """Order numbers (``all`` = every built-in order of the benchmark) or order YAML paths."""
    from .config import list_orders

    known = list_orders(benchmark)
    if str(raw).strip().lower() == "all":
        return sorted(known, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    orders: list[str] = []
    for item in _split(raw, "orders"):
        if item.isdigit():
            item = str(int(item))
            if item not in known:
                raise UserError(f"--orders: unknown order {item!r}; known: {', '.join(known)} (or a YAML path)")
        elif not Path(item).is_file():
            raise UserError(f"--orders: {item!r} is neither an order number ({', '.join(known)}) nor a YAML file")
        if item not in orders:
            orders.append(item)
    return orders


def parse_seeds(raw: str) -> list[int]:
    seeds: list[int] = []
    for item in _split(raw, "seeds"):
        try:
            seed = int(item)
        except ValueError:
            raise UserError(f"--seeds: {item!r} is not an integer (expected e.g. 0,1,2)") from None
        if seed not in seeds:
            seeds.append(seed)
    return seeds


def split_overrides(methods: list[str], overrides: dict[str, Any], preset: str) -> dict[str, dict[str, Any]]:
    """``--set`` keys per method: each key goes to the methods that have it (error if none has it)."""
    from .config import resolve_hparams
    from .registry import get_method, method_defaults

    valid = {m: set(resolve_hparams(method_defaults(get_method(m)), preset, {}, m)) for m in methods}
    unknown = sorted(k for k in overrides if not any(k in keys for keys in valid.values()))
    if unknown:
        every = sorted(set().union(*valid.values()))
        raise UserError(f"--set: unknown key(s) {', '.join(unknown)} for the selected methods; "
                        f"valid keys: {', '.join(every)}")
    return {m: {k: v for k, v in overrides.items() if k in valid[m]} for m in methods}


def run_status(run_dir: Path) -> tuple[str, str]:
    """("complete" | "resume" | "new", human detail) of a run folder, from state.json / summary.json."""
    from .engine.runner import STATE_FILE

    state_path, summary_path = run_dir / STATE_FILE, run_dir / "summary.json"
    state = _read_json(state_path)
    summary = _read_json(summary_path)
    if (state or {}).get("complete") is True or (summary or {}).get("complete") is True:
        return "complete", "complete, skipped"
    if state is None:
        return "new", "new"
    trained = sorted(state.get("trained", []))
    cells = sum(len(c) for c in state.get("cells", {}).values())
    stages = f"trained stages {','.join(map(str, trained))}" if trained else "no stage trained yet"
    return "resume", f"resume ({stages}; {cells} cells evaluated)"


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable JSON ({exc}); move the run folder away to rerun it") from None
    return data if isinstance(data, dict) else None


def plan_sweep(spec: SweepSpec) -> list[SweepItem]:
    """Validate everything and plan every combination; writes nothing."""
    from .config import RunConfig
    from .engine.runner import default_run_dir, plan_run

    methods = select_methods(spec.methods)
    options = dict(spec.run_options)
    orders = select_orders(spec.orders, options.get("benchmark"))
    seeds = parse_seeds(spec.seeds)
    per_method = split_overrides(methods, spec.overrides, options.get("preset", "default"))
    benchmark = options.get("benchmark", "synthetic")
    items: list[SweepItem] = []
    for method in methods:
        for order in orders:
            for seed in seeds:
                run_dir = default_run_dir(Path(spec.root), benchmark, method, order, seed)
                status, detail = run_status(run_dir)
                # resume=True is harmless for a new folder and makes plan_run compare an existing
                # folder's config.yaml with this configuration (mismatch = UserError, up front)
                cfg = RunConfig(method=method, order=order, seed=seed, output=str(run_dir), resume=True,
                                overrides=dict(per_method[method]), **options)
                items.append(SweepItem(method, order, seed, run_dir, status, detail, plan_run(cfg)))
    return items


# ---------------------------------------------------------------- running

def _label(item: SweepItem) -> str:
    return f"{item.method} order {item.order} seed {item.seed}"


def run_sweep(items: list[SweepItem], progress: bool = False,
              echo: Callable[[str], None] = print) -> SweepResult:
    """Run the planned items in turn; skips complete ones, resumes partial ones, survives failures."""
    from .api import run
    from .engine.interrupt import Interrupted
    from .rundir.run_lock import FolderLocked

    result = SweepResult()
    started = time.time()
    total = len(items)
    try:
        for index, item in enumerate(items, start=1):
            head = f"[{index}/{total}] {_label(item)}"
            status, detail = run_status(item.run_dir)  # again: another sweep may have finished it
            if status == "complete":
                echo(f"{head}: {detail}")
                result.skipped.append(item)
                continue
            echo(f"{head}: {detail} -> {item.run_dir}")
            run_started = time.time()
            try:
                summary = run(item.plan.config, progress=progress, lock_what="sweep").summary
            except FolderLocked as exc:  # not a failure of the run: sweeps sharing a root split the work
                echo(f"{head}: skipped: {exc}")
                result.busy.append(item)
            except Interrupted:  # a signal: the sweep stops (below), the run resumes when it is rerun
                raise
            except Exception as exc:  # noqa: BLE001 - one failing run must not end the sweep
                log = item.run_dir / ERROR_LOG
                write_error_file(log, traceback.format_exc())
                message = f"{type(exc).__name__}: {exc}".splitlines()[0]
                echo(f"{head}: FAILED after {time.time() - run_started:.1f} s: {message} (traceback: {log})")
                result.failed.append((item, message))
            else:
                (item.run_dir / ERROR_LOG).unlink(missing_ok=True)
                echo(f"{head}: done in {time.time() - run_started:.1f} s: {_metrics_line(summary)}")
                result.done.append(item)
            finally:
                _release_memory()
    except BaseException:
        echo(f"sweep interrupted after {time.time() - started:.1f} s; rerun the same command to resume "
             "(finished runs are skipped, the interrupted one continues from its last completed task)")
        raise
    return result


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _metrics_line(summary: dict[str, Any]) -> str:
    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    return "  ".join(f"{k}={fmt(summary.get(k))}" for k in ("avg", "last", "fgt", "fwd"))


def describe_plan(items: list[SweepItem]) -> list[str]:
    """Lines for ``--dry-run``: one per combination and a count."""
    lines = [f"[{i}/{len(items)}] {_label(it)}: {it.detail} -> {it.run_dir}" for i, it in enumerate(items, start=1)]
    counts = {s: sum(it.status == s for it in items) for s in ("new", "resume", "complete")}
    lines.append(f"would run {counts['new'] + counts['resume']} of {len(items)} "
                 f"({counts['new']} new, {counts['resume']} to resume); {counts['complete']} complete, skipped")
    return lines
