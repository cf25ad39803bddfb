"""The tuning report (``<root>/report.md``): per benchmark and method, the best values, the cost of the study
and the method's sensitivity (the spread of the objective over its completed trials)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

REPORT_FILE = "report.md"


# Optuna access and study wording shared with the tuner (tuning.py imports them from here: one direction)
def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UserError('mcit-bench tune needs Optuna: pip install "mcit-bench[tune]"') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def objective_description(objective: str) -> str:
    if objective == "avg":
        return "final avg (MAA: mean over stages of the mean accuracy on the tasks learned so far), maximised"
    return "final last (mean accuracy on every task after the last stage; avg is undefined for joint), maximised"


def trial_counts(study: Any) -> dict[str, int]:
    """Trials by how they ended (an interrupted trial, continued by a later one, is not a failure)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    # a trial cut off by a killed process is marked FAIL and continued by a later trial: not a failure
    continued = {t.user_attrs.get("continues_trial") for t in trials}
    interrupted = sum(t.state == TrialState.FAIL and t.number in continued for t in trials)
    return {"complete": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL) - interrupted, "interrupted": interrupted,
            "running": states.count(TrialState.RUNNING)}


@dataclass
class TrialRow:
    """One finished trial: its values, how it ended and its objective (the running avg where it was pruned)."""
    number: int
    params: dict[str, Any]
    state: str  # "complete" or "pruned after task k"
    value: float | None
    seconds: float


@dataclass
class StudySummary:
    benchmark: str
    method: str
    db: Path
    protocol: dict[str, Any]
    complete: int
    pruned: int
    failed: int
    interrupted: int  # cut off by a killed process and continued by a later trial with the same values
    best_value: float | None
    best_values: dict[str, Any]
    seconds: float
    values: list[float]  # objective of every completed trial
    trials: list[TrialRow]
    at_edge: list[str]  # best values in the outer tenth of their range: the optimum may lie outside it

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


EDGE = 0.1  # a best value this close (as a fraction of its range, log scale where log) to a bound is flagged


def range_position(value: float, low: float, high: float, log: bool) -> float:
    """Where ``value`` lies in [low, high]: 0 at low, 1 at high (on the log scale when ``log``)."""
    if high <= low:
        return 0.5
    if log:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (value - low) / (high - low)


def params_at_edge(trial: Any) -> list[str]:
    """Numeric hyper-parameters of ``trial`` whose value lies in the outer tenth of its sampled range."""
    out = []
    for name, dist in trial.distributions.items():
        low, high = getattr(dist, "low", None), getattr(dist, "high", None)
        if low is None or high is None or name not in trial.params:
            continue  # categorical
        pos = range_position(float(trial.params[name]), float(low), float(high), bool(getattr(dist, "log", False)))
        if pos <= EDGE or pos >= 1 - EDGE:
            out.append(f"{name} ({'low' if pos <= EDGE else 'high'} end of [{_fmt(float(low))}, {_fmt(float(high))}])")
    return out


def study_seconds(study: Any) -> float:
    """Wall seconds of every trial (interrupted ones up to their last finished task)."""
    return float(sum(float(t.user_attrs.get("seconds", 0.0)) for t in study.get_trials(deepcopy=False)))


def spread(values: list[float]) -> dict[str, float] | None:
    """min, quartiles, median, max and IQR of the objective (None without values)."""
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    q1, median, q3 = np.percentile(arr, [25, 50, 75])
    return {"min": float(arr.min()), "q1": float(q1), "median": float(median), "q3": float(q3),
            "max": float(arr.max()), "iqr": float(q3 - q1)}


def collect(root: str | Path) -> list[StudySummary]:
    """Every study stored under ``<root>/<benchmark>/<method>.db``."""
    optuna = require_optuna()
    from optuna.trial import TrialState

    out = []
    for db in sorted(Path(root).glob("*/*.db")):
        storage = f"sqlite:///{db}"
        for name in optuna.study.get_all_study_names(storage):
            study = optuna.load_study(study_name=name, storage=storage)
            trials = study.get_trials(deepcopy=False)
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            counts = trial_counts(study)
            rows = [_row(t, TrialState, trials) for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
            best = max(done, key=lambda t: t.value) if done else None
            protocol = study.user_attrs.get("protocol") or {}
            out.append(StudySummary(
                benchmark=str(protocol.get("benchmark", db.parent.name)), method=str(protocol.get("method", db.stem)),
                db=db, protocol=protocol, complete=len(done),
                pruned=counts["pruned"], failed=counts["failed"], interrupted=counts["interrupted"],
                best_value=None if best is None else float(best.value), best_values={} if best is None else best.params,
                seconds=study_seconds(study), values=[float(t.value) for t in done], trials=rows,
                at_edge=[] if best is None else params_at_edge(best)))
    return out


def _row(trial: Any, states: Any, trials: list[Any]) -> TrialRow:
    if trial.state == states.COMPLETE:
        state, value = "complete", float(trial.value)
    else:  # pruned: its last reported running avg
        step = max(trial.intermediate_values) if trial.intermediate_values else None
        state = "pruned" if step is None else f"pruned after task {step}"
        value = None if step is None else float(trial.intermediate_values[step])
    seconds, t = 0.0, trial
    while t is not None:  # a continued trial's time includes the interrupted attempts it continued
        seconds += float(t.user_attrs.get("seconds", 0.0))
        before = t.user_attrs.get("continues_trial")
        t = trials[before] if isinstance(before, int) and 0 <= before < len(trials) else None
    return TrialRow(trial.number, dict(trial.params), state, value, seconds)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_report(studies: list[StudySummary]) -> str:
    out = ["# Tuning report", "",
           "Written by `mcit-bench tune`. Each trial is a full continual run on the tuning stream, which is disjoint "
           "from the reported one (built-in benchmark: another data seed; UCIT/CoIN: a validation split carved from "
           "the training records), under a reduced budget. The best values are the `tuned` preset "
           "(`tuned.yaml`, `--preset tuned`). Sensitivity: the spread of the objective over the completed trials "
           "(pruned trials stopped early and have no final value); a wide spread or IQR means the method works only "
           "in a narrow band of its search space. Wall time: the trials' run time (train and evaluation).", ""]
    if not studies:
        return "\n".join(out + ["No study stored yet.", ""])
    for bench in sorted({s.benchmark for s in studies}):
        rows = [s for s in studies if s.benchmark == bench]
        first = rows[0].protocol
        out += [f"## {bench}", "", f"- Stream: {first.get('stream', 'n/a')}",
                f"- Budget: {first.get('budget', 'n/a')} (" + ", ".join(
                    f"{k}={v}" for k, v in (first.get("resolved_budget") or {}).items()) + ")",
                f"- Order {first.get('order', 'n/a')}, seed {first.get('seed', 'n/a')}, backbone "
                f"`{first.get('backbone', 'n/a')}`, base preset `{first.get('preset', 'n/a')}`", ""]
        header = ["method", "objective", "trials (complete / pruned / failed / interrupted)", "best", "best values",
                  "at the edge", "wall time (s)", "min", "median", "max", "IQR"]
        body = []
        for s in sorted(rows, key=lambda r: r.method):
            sp = spread(s.values)
            cells = [s.method, str(s.protocol.get("objective", "avg")),
                     f"{s.finished} ({s.complete} / {s.pruned} / {s.failed} / {s.interrupted})",
                     "n/a" if s.best_value is None else f"{s.best_value:.2f}",
                     ", ".join(f"{k}={_fmt(v)}" for k, v in s.best_values.items()) or "n/a",
                     ", ".join(s.at_edge) or "none", f"{s.seconds:.0f}"]
            cells += ["n/a"] * 4 if sp is None else [f"{sp[k]:.2f}" for k in ("min", "median", "max", "iqr")]
            body.append(cells)
        out += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body] + [""]
        objectives = sorted({str(s.protocol.get("objective", "avg")) for s in rows})
        out += [f"Objective `{o}`: {objective_description(o)}." for o in objectives] + [""]
        out += [f"At the edge: a best value in the outer {EDGE:.0%} of its sampled range (log scale where the range "
                "is log); the optimum may lie outside the range, so widen it and run the study again."]
        edged = [s for s in rows if s.at_edge]
        if edged:
            out += ["", "> **Note:** best values at the edge of their range: " + "; ".join(
                f"{s.method}: {', '.join(s.at_edge)}" for s in edged) + "."]
        out += [""]
        spaces = [f"- `{s.method}`: " + ", ".join(f"{k} {v}" for k, v in (s.protocol.get("search_space") or {}).items())
                  for s in sorted(rows, key=lambda r: r.method)]
        out += ["Search spaces:", "", *spaces, ""]
        out += ["Trials: `finished (complete / pruned / failed / interrupted)`; an interrupted trial was cut off by a "
                "killed process and continued, from its last finished task, by a later trial with the same values; its "
                "time counts in the wall time.", ""]
        for s in sorted(rows, key=lambda r: r.method):
            out += _trial_table(s)
        counts = {s.finished for s in rows}
        if len(counts) > 1:
            out += ["> **Note:** the studies hold different numbers of finished trials ("
                    + ", ".join(f"{s.method}: {s.finished}" for s in rows) + "); run each to the same `--trials` "
                    "before comparing the methods.", ""]
        if len({str(s.protocol.get("resolved_budget")) for s in rows}) > 1:
            out += ["> **Note:** the studies were run with different budgets; they are not comparable.", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _trial_table(s: StudySummary) -> list[str]:
    """Every finished trial of one study, sorted by its first hyper-parameter (the learning rate where declared),
    so a reader sees over which band the method works."""
    if not s.trials:
        return []
    names = list((s.protocol.get("search_space") or {}).keys()) or sorted({k for t in s.trials for k in t.params})
    key = "lr" if "lr" in names else names[0]
    trials = sorted(s.trials, key=lambda t: (t.params.get(key) is None, t.params.get(key, 0), t.number))
    header = ["trial", *names, "ended", "avg (running avg where pruned)", "time (s)"]
    out = [f"`{s.method}`, every finished trial by {key}:", "",
           "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for t in trials:
        cells = [str(t.number), *(_fmt(t.params.get(n, "n/a")) for n in names), t.state,
                 "n/a" if t.value is None else f"{t.value:.2f}", f"{t.seconds:.0f}"]
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def write_report(root: str | Path) -> Path:
    from ..rundir.atomic import atomic_write_text

    path = Path(root) / REPORT_FILE
    atomic_write_text(path, render_report(collect(root)))
    return path
