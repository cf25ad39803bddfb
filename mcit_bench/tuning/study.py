"""``mcit-bench tune``: fair hyper-parameter selection for one method on a stream disjoint from the reports.

- Sampler: Optuna's TPE, seeded (``--seed`` plus the number of trials already stored, so a resumed study
  does not replay the first draws); pruning: ``MedianPruner`` after each task on the running ``avg``
  (mean of A_1..A_t; joint has no intermediate rows and is never pruned).
- Objective: the trial's final ``avg`` (MAA), maximised; ``last`` for joint, whose ``avg`` is undefined.
- Stream (``data_stream="tuning"``): on the built-in benchmark the tasks generated from another data seed
  (other images and records); on UCIT/CoIN a validation split carved from each task's training records.
  Budget ``reduced``: half the steps per task and half the test records of the base preset.
- Each trial is a real run through the runner, in ``<root>/<benchmark>/<method>/trial-<hash of values>``;
  the study is stored in ``<root>/<benchmark>/<method>.db`` (SQLite). Rerunning the same command resumes
  it: finished trials are kept, a trial cut off mid-run is retried with the same values and its run
  continues from its last completed task. One process per study.
- When the study holds ``--trials`` finished trials, the best values go to ``<root>/tuned.yaml`` (the
  ``tuned`` preset) with their provenance, and ``<root>/report.md`` is rewritten.
"""
from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..rundir.atomic import write_error_file
from .report import objective_description, params_at_edge, require_optuna, study_seconds  # noqa: F401
from .report import trial_counts, write_report

TRIALS_DEFAULT = 20
BUDGETS = ("reduced", "full")
PRUNERS = ("median", "none")
REDUCED_VALIDATION_RECORDS = 200  # reduced budget on UCIT/CoIN: validation records scored per task
BUDGET_KEYS_SHOWN = ("steps_per_task", "train_size", "test_size", "batch_size")


@dataclass
class TuneSpec:
    method: str
    benchmark: str = "synthetic"
    trials: int = TRIALS_DEFAULT
    budget: str = "reduced"
    preset: str = "default"  # base preset of every trial (default | quick)
    order: str = "1"
    seed: int = 0  # training seed of every trial and the sampler's seed
    backbone: str = "tiny-llava"
    root: str = "results/tuning"
    overrides: dict[str, Any] = field(default_factory=dict)  # --set, applied to every trial
    pruner: str = "median"
    startup_trials: int = 3  # completed trials before the pruner prunes
    # The first task on which a trial may be pruned. After task 1 the running avg is the first task's score
    # alone, with no forgetting in it: pruning there stopped lora-ft trials at 82-90 whose learning rates
    # (3e-4 to 1e-3) forget least, in favour of ones that learn the first task to 100 and forget more.
    prune_from_task: int = 2
    run_options: dict[str, Any] = field(default_factory=dict)  # RunConfig fields: accelerator, data_root, ...


@dataclass
class TunePlan:
    spec: TuneSpec
    method: str  # canonical name
    space: dict[str, Any]  # name -> search_space.Param
    budget: dict[str, Any]  # overrides of the reduced budget
    resolved_budget: dict[str, Any]  # the budget keys a trial runs with
    objective: str
    stream: str
    db: Path
    study_name: str
    protocol: dict[str, Any]  # what must not change when a study resumes


@dataclass
class TuneResult:
    finished: int
    complete: int
    pruned: int
    failed: int
    best_value: float | None
    best_values: dict[str, Any] | None
    tuned_written: bool
    report: Path | None


def budget_overrides(name: str, base: dict[str, Any]) -> dict[str, Any]:
    """The ``reduced`` budget: half the steps per task and half the test records of ``base`` (resolved hparams)."""
    if name not in BUDGETS:
        raise UserError(f"--budget {name!r}: expected one of {', '.join(BUDGETS)}")
    if name == "full":
        return {}
    test = base.get("test_size")
    return {"steps_per_task": max(1, int(base["steps_per_task"]) // 2),
            "test_size": max(1, int(test) // 2) if test else REDUCED_VALIDATION_RECORDS}


def stream_description(benchmark: str) -> str:
    if benchmark == "synthetic":
        from ..benchmarks.synthetic import TUNING_DATA_SEED

        return (f"synthetic tasks generated from data seed {TUNING_DATA_SEED} (reported runs: data seed 0): other "
                f"images and records")
    from ..benchmarks.native import VALIDATION_FRACTION, VALIDATION_MAX

    return (f"a validation split carved from each task's training records ({VALIDATION_FRACTION:.0%}, at most "
            f"{VALIDATION_MAX}); the trial trains on the other training records; the test split is never used")


def objective_of(method_cls: type) -> str:
    return "last" if getattr(method_cls, "joint", False) else "avg"


def _trial_config(plan_: TunePlan, run_dir: Path, values: dict[str, Any]) -> Any:
    return _config(plan_.spec, plan_.method, run_dir, {**plan_.budget, **plan_.spec.overrides, **values})


def _config(s: TuneSpec, method: str, run_dir: Path, overrides: dict[str, Any]) -> Any:
    from ..config import RunConfig

    return RunConfig(method=method, order=s.order, benchmark=s.benchmark, backbone=s.backbone, seed=s.seed,
                     preset=s.preset, output=str(run_dir), resume=True, data_stream="tuning", overrides=overrides,
                     **s.run_options)


def plan_tune(spec: TuneSpec) -> TunePlan:
    """Validate everything (method, search space, budget, benchmark, order, backbone); writes nothing."""
    from ..config import PRESETS, TRAIN_DEFAULTS
    from ..registry import get_method, method_defaults
    from ..engine.runner import plan_run, resolve_run_hparams
    from .search_space import search_space

    cls = get_method(spec.method)
    defaults = method_defaults(cls)
    space = search_space(cls, {**TRAIN_DEFAULTS, **defaults})
    if not space:
        raise UserError(f"method {cls.name!r} declares no search space (nothing to tune); add a 'search_space:' "
                        f"section to the YAML beside its module")
    if spec.preset not in PRESETS or spec.preset == "tuned":
        raise UserError(f"--preset {spec.preset!r}: the base preset of the trials must be default or quick")
    if isinstance(spec.trials, bool) or not isinstance(spec.trials, int) or spec.trials < 1:
        raise UserError(f"--trials {spec.trials!r}: expected a positive integer")
    if spec.pruner not in PRUNERS:
        raise UserError(f"--pruner {spec.pruner!r}: expected one of {', '.join(PRUNERS)}")
    if spec.startup_trials < 0:
        raise UserError(f"--startup-trials {spec.startup_trials!r}: expected an integer >= 0")
    if isinstance(spec.prune_from_task, bool) or not isinstance(spec.prune_from_task, int) or spec.prune_from_task < 1:
        raise UserError(f"--prune-from-task {spec.prune_from_task!r}: expected an integer >= 1")
    clash = sorted(set(spec.overrides) & set(space))
    if clash:
        raise UserError(f"--set {', '.join(clash)}: tuned by the search space of {cls.name!r}; not settable here")
    root = Path(spec.root)
    probe_dir = root / spec.benchmark / cls.name / "probe"
    # the base preset's values, resolved as every run resolves them (runner.resolve_run_hparams): no --set
    base = resolve_run_hparams(_config(spec, cls.name, probe_dir, {})).values
    budget = budget_overrides(spec.budget, base)
    # a probe plan with the method's defaults: benchmark, order, backbone and --set keys are checked now
    probe = TunePlan(spec, cls.name, space, budget, {}, objective_of(cls), stream_description(spec.benchmark),
                     root / spec.benchmark / f"{cls.name}.db", f"{spec.benchmark}/{cls.name}", {})
    checked = plan_run(_trial_config(probe, probe_dir, {}))
    probe.resolved_budget = {k: checked.hparams.get(k) for k in BUDGET_KEYS_SHOWN}  # the plan's, as a trial runs
    probe.protocol = {"benchmark": spec.benchmark, "method": cls.name, "order": spec.order, "seed": spec.seed,
                      "backbone": spec.backbone, "preset": spec.preset, "budget": spec.budget,
                      "resolved_budget": probe.resolved_budget, "overrides": dict(sorted(spec.overrides.items())),
                      "objective": probe.objective, "stream": probe.stream,
                      "search_space": {k: p.describe() for k, p in space.items()}, "pruner": pruner_text(spec)}
    return probe


def pruner_text(spec: TuneSpec) -> str:
    if spec.pruner != "median":
        return "none"
    return (f"median after each task from task {spec.prune_from_task} on the running avg "
            f"(startup {spec.startup_trials})")


def trial_dir(plan_: TunePlan, values: dict[str, Any]) -> Path:
    """The run folder of a set of values: the same values continue the same run (resume after interruption)."""
    key = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(plan_.spec.root) / plan_.spec.benchmark / plan_.method / f"trial-{key}"


def open_study(plan_: TunePlan) -> Any:
    """Create or load the study; a stored study run with another protocol is an error."""
    optuna = require_optuna()
    plan_.db.parent.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{plan_.db}"
    exists = plan_.study_name in optuna.study.get_all_study_names(storage)
    stored = len(optuna.load_study(study_name=plan_.study_name, storage=storage).trials) if exists else 0
    spec = plan_.spec
    sampler = optuna.samplers.TPESampler(seed=spec.seed + stored, n_startup_trials=min(10, max(1, spec.trials // 2)))
    # steps are task numbers (1-based): optuna prunes from step n_warmup_steps on
    pruner = optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=spec.prune_from_task) \
        if spec.pruner == "median" else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name=plan_.study_name, storage=storage, direction="maximize", sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    before = study.user_attrs.get("protocol")
    if before is None:
        study.set_user_attr("protocol", plan_.protocol)
    elif json.loads(json.dumps(before)) != json.loads(json.dumps(plan_.protocol, default=str)):
        differing = sorted(k for k in set(before) | set(plan_.protocol)
                           if json.dumps(before.get(k), default=str) != json.dumps(plan_.protocol.get(k), default=str))
        raise UserError(f"{plan_.db}: study {plan_.study_name!r} was run with other settings (differing: "
                        f"{', '.join(differing)}); rerun with the same options or use another --root")
    return study


def requeue_interrupted(study: Any, echo: Callable[[str], None]) -> int:
    """Trials left RUNNING by a killed process: marked failed, their values queued again (their run resumes)."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
        if t.params:
            study.enqueue_trial(dict(t.params), user_attrs={"continues_trial": t.number})
        echo(f"trial {t.number} was interrupted: retried with the same values"
             + (f" ({t.user_attrs.get('run_dir')} continues)" if t.user_attrs.get("run_dir") else ""))
    return len(stale)


def run_tune(plan_: TunePlan, echo: Callable[[str], None] = print, progress: bool = False,
             command: list[str] | None = None) -> TuneResult:
    """Run trials until the study holds ``trials`` finished (complete or pruned) ones; then write the results.

    Each trial is one ``mcit_bench.run`` (its folder locked, on ``--devices`` processes if asked); ``command``
    (the ``mcit-bench tune`` arguments) is what an interrupted trial says to rerun."""
    optuna = require_optuna()
    from optuna.trial import TrialState

    from ..api import run
    from ..engine.interrupt import Interrupted
    from ..sweep import _release_memory

    spec = plan_.spec
    study = open_study(plan_)
    requeue_interrupted(study, echo)
    failures = 0
    while _finished(study) < spec.trials:
        trial = study.ask()
        values = {name: p.suggest(trial) for name, p in plan_.space.items()}
        run_dir = trial_dir(plan_, values)
        trial.set_user_attr("run_dir", str(run_dir))
        head = f"[trial {trial.number}, {_finished(study) + 1}/{spec.trials}] " + \
            ", ".join(f"{k}={_short(v)}" for k, v in values.items())
        started = time.time()
        _release_memory()  # the previous trial's model and optimiser
        try:
            summary = run(_trial_config(plan_, run_dir, values), progress=progress, command=command,
                          command_resumes=command is not None, lock_what="tune",
                          on_stage=_reporter(trial, plan_.objective, started, optuna)).summary
            value = summary.get(plan_.objective)
            if value is None:
                raise RuntimeError(f"the run's {plan_.objective} is unavailable")
        except Interrupted:  # SIGINT / SIGTERM: the trial stays running in the study and is retried on resume
            raise
        except optuna.TrialPruned as exc:
            trial.set_user_attr("seconds", round(time.time() - started, 3))
            study.tell(trial, state=TrialState.PRUNED)
            echo(f"{head}: pruned ({exc}) after {time.time() - started:.1f} s")
            continue
        except Exception as exc:  # noqa: BLE001 - a failing trial (e.g. a diverging one) must not end the study
            failures += 1
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            trial.set_user_attr("error", message)
            trial.set_user_attr("seconds", round(time.time() - started, 3))
            write_error_file(run_dir / "error.log", traceback.format_exc())
            study.tell(trial, state=TrialState.FAIL)
            echo(f"{head}: FAILED: {message}")
            if failures >= spec.trials:
                raise UserError(f"{plan_.db}: {failures} trials failed in this process (as many as --trials); "
                                f"see error.log in the trial folders") from exc
            continue
        trial.set_user_attr("seconds", round(time.time() - started, 3))
        study.tell(trial, float(value))
        echo(f"{head}: {plan_.objective}={value:.2f} in {time.time() - started:.1f} s")
    return finish(plan_, study, echo)


def _finished(study: Any) -> int:
    counts = trial_counts(study)
    return counts["complete"] + counts["pruned"]


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _reporter(trial: Any, objective: str, started: float, optuna: Any) -> Callable[[int, dict[str, Any]], None]:
    """After each task but the last: report the running avg (mean of A_1..A_t); prune when the pruner says so."""

    def report(stage: int, summary: dict[str, Any]) -> None:
        trial.set_user_attr("seconds", round(time.time() - started, 3))  # an interrupted trial keeps its cost
        if stage == 0 or stage >= len(summary.get("tasks") or []) or objective != "avg":
            return  # nothing learned yet / the final value is the objective itself, never a reason to prune
        curve = (summary.get("curves") or {}).get("A_t", [])[:stage]
        if len(curve) < stage or any(v is None for v in curve):
            return
        running = float(sum(curve) / len(curve))
        trial.report(running, stage)
        if trial.should_prune():
            raise optuna.TrialPruned(f"running avg {running:.2f} after task {stage}")

    return report


def finish(plan_: TunePlan, study: Any, echo: Callable[[str], None] = print) -> TuneResult:
    """Write the best values with their provenance (tuned.yaml) and the tuning report."""
    from .tuned import write_tuned

    counts = trial_counts(study)
    finished = counts["complete"] + counts["pruned"]
    root = Path(plan_.spec.root)
    written = False
    best_value = best_values = None
    if counts["complete"]:
        best = study.best_trial
        best_value, best_values = float(best.value), dict(best.params)
        if finished >= plan_.spec.trials:
            spec = plan_.spec
            provenance = {
                "stream": plan_.stream, "budget": f"{spec.budget}: " + ", ".join(
                    f"{k}={v}" for k, v in plan_.resolved_budget.items()),
                "trials": finished, "complete": counts["complete"], "pruned": counts["pruned"],
                "failed": counts["failed"], "interrupted_and_continued": counts["interrupted"], "objective": objective_description(plan_.objective),
                "best_value": round(best_value, 4), "best_trial": best.number,
                "best_run": best.user_attrs.get("run_dir"),
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "study": str(plan_.db), "study_name": plan_.study_name,
                "order": spec.order, "seed": spec.seed, "backbone": spec.backbone, "preset": spec.preset,
                "sampler": f"TPE (seed {spec.seed} + trials stored at each start)",
                "pruner": pruner_text(spec),
                "wall_seconds": round(study_seconds(study), 1),
                "at_edge": params_at_edge(best),
            }
            write_tuned(root / "tuned.yaml", spec.benchmark, plan_.method, best_values, provenance)
            written = True
    report = write_report(root)
    echo(f"study {plan_.study_name}: {finished}/{plan_.spec.trials} finished ({counts['complete']} complete, "
         f"{counts['pruned']} pruned, {counts['failed']} failed, {counts['interrupted']} interrupted and continued)"
         + (f"; best {plan_.objective}={best_value:.2f} with " + ", ".join(f"{k}={_short(v)}" for k, v in
                                                                       best_values.items()) if best_values else "")
         + (f"; written to {root / 'tuned.yaml'}" if written else "") + f"; report {report}")
    edge = params_at_edge(study.best_trial) if counts["complete"] else []  # best_trial: the maximised objective
    if edge:
        echo(f"warning: best value at the edge of its range: {', '.join(edge)}; the optimum may lie outside it "
             f"(widen the range in the method's YAML and run a new study)")
    return TuneResult(finished, counts["complete"], counts["pruned"], counts["failed"], best_value, best_values,
                      written, report)
