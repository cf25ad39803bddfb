"""``mcit-bench leaderboard``: aggregate complete run folders into one row per method.

Conventions (also printed with every table):

- a run folder is any folder under RUNS_DIR holding ``summary.json``; only runs whose summary says
  ``complete: true`` are used, the others are listed as skipped;
- metrics are recomputed from the run's ``accuracy.csv`` with ``mcit_bench.metrics`` (the matrix is
  the source of truth; ``--metrics`` accepts the six summary metrics and every named variant);
- each cell is mean ± *sample* standard deviation (``ddof=1``) over the row's runs (task orders x
  seeds); one value gives std "–"; a null metric (a needed matrix cell missing) is never 0: it is
  left out of the mean and the cell says ``(n=k)``; all null gives "n/a";
- per-task final scores come from the last row of each matrix, re-aligned by task NAME (orders
  put tasks in different columns);
- runs are averaged together only when their *setting* is identical (benchmark, backbone, preset,
  eval mode, precision, devices, task set and scorers, data/budget keys, software versions); each
  distinct setting is a separate table. Inside a table, one method run with different
  hyper-parameters gives separate rows labelled by the differing keys. Notes say what differs;
- the best value per column is bold (md/latex) or flagged ``*`` (csv): higher is better except
  forgetting (``fgt`` and its variants); reference rows (default ``zero-shot`` and ``joint``:
  bounds, not continual learners) are shown but never marked; ties at the displayed precision
  are all marked; a column with fewer than two candidate values is not marked.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import yaml

from .errors import UserError

DEFAULT_METRICS = ("avg", "last", "mft", "bwt", "fgt", "fwd")
# Run settings that make two runs incomparable when they differ (config.yaml keys).
SETTING_CONFIG_KEYS = ("benchmark", "backbone", "preset", "eval_mode", "precision", "devices")
# Hyper-parameters that define the data and the training budget, shared by every method of a table.
SETTING_HPARAMS = ("train_size", "test_size", "steps_per_task", "batch_size", "eval_max_new_tokens")
DECIMALS = 2
DASH = "–"  # std of a single run


def lower_is_better(metric: str) -> bool:
    """Forgetting (``fgt`` and ``fgt.<variant>``) is better low; every other metric is better high."""
    return metric == "fgt" or metric.startswith("fgt.")


# ---------------------------------------------------------------- data model

@dataclass
class Stat:
    mean: float | None
    std: float | None  # sample std (ddof=1); None when n < 2
    n: int


def stat(values: Iterable[float | None]) -> Stat:
    """Mean and sample std (ddof=1) of the non-null values; n counts them."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return Stat(None, None, 0)
    arr = np.array(vals)
    return Stat(float(arr.mean()), float(arr.std(ddof=1)) if len(vals) > 1 else None, len(vals))


@dataclass
class RunRecord:
    path: Path
    method: str
    order: str
    seed: int
    tasks: list[str]
    matrix: np.ndarray
    metrics: dict[str, float | None]
    curves: dict[str, list[float | None]]
    final: dict[str, float | None]  # task name -> last-row score
    trainable_parameters: float | None
    seconds: float | None  # train + eval seconds over all stages (resume-proof)
    setting: dict[str, Any]
    hparams: dict[str, Any]  # the method's own hyper-parameters (setting keys removed)


@dataclass
class Row:
    label: str
    method: str
    reference: bool
    runs: list[RunRecord]
    stats: dict[str, Stat] = field(default_factory=dict)
    tasks: dict[str, Stat] = field(default_factory=dict)
    params: Stat = field(default_factory=lambda: Stat(None, None, 0))
    seconds: Stat = field(default_factory=lambda: Stat(None, None, 0))
    best: set[str] = field(default_factory=set)  # columns where this row is marked best


@dataclass
class Group:
    index: int
    setting: dict[str, Any]
    rows: list[Row]
    task_names: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass
class Leaderboard:
    runs_dir: str
    metrics: list[str]
    groups: list[Group]
    skipped: list[tuple[str, str]]
    group_notes: list[str]
    paper: dict[str, Any] | None = None

    @property
    def n_runs(self) -> int:
        return sum(len(r.runs) for g in self.groups for r in g.rows)


# ---------------------------------------------------------------- loading

def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: missing (every run folder has its resolved config.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping")
    return data


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{where}: expected a number or null, got {value!r}")
    return float(value)


def load_run(run_dir: Path, metrics: Sequence[str], summary: dict[str, Any]) -> RunRecord:
    """One complete run folder (its parsed summary.json, config.yaml, accuracy.csv) as a RunRecord."""
    from .matrix_io import read_matrix_csv
    from .metrics import summarize

    config = _read_yaml(run_dir / "config.yaml")
    R, names = read_matrix_csv(run_dir / "accuracy.csv")
    if summary.get("tasks") is not None and list(summary["tasks"]) != names:
        raise UserError(f"{run_dir}/summary.json: field 'tasks' {summary['tasks']} disagrees with the columns of "
                        f"accuracy.csv {names}")
    full = summarize(R)
    values = {**{k: full[k] for k in DEFAULT_METRICS}, **full["variants"]}
    method = summary.get("method") or config.get("method")
    if not method:
        raise UserError(f"{run_dir}/summary.json: field 'method' missing")
    hparams = config.get("hparams") or {}
    if not isinstance(hparams, dict):
        raise UserError(f"{run_dir}/config.yaml: field 'hparams' must be a mapping")
    timings = summary.get("timings") or {}
    secs = [_number(timings.get(k), f"{run_dir}/summary.json: timings.{k}")
            for k in ("train_seconds_total", "eval_seconds_total")]
    seconds = None if all(s is None for s in secs) else sum(s or 0.0 for s in secs)
    setting = {key: _str(summary.get(key, config.get(key))) for key in SETTING_CONFIG_KEYS}
    setting["backbone_checkpoint"] = _str(summary.get("backbone_checkpoint"))  # recipe hash of a built-in
    setting["tasks"] = sorted(names)
    setting["scorers"] = {t: _scorer_tag(v) for t, v in sorted((summary.get("scorers") or {}).items())}
    setting["budget"] = {k: hparams.get(k) for k in SETTING_HPARAMS}
    setting["versions"] = dict(sorted(((summary.get("environment") or {}).get("versions") or {}).items()))
    return RunRecord(
        path=run_dir, method=str(method), order=_str(summary.get("order", config.get("order"))),
        seed=int(summary.get("seed", config.get("seed", 0))), tasks=names, matrix=R,
        metrics={m: values[m] for m in metrics}, curves=full["curves"],
        final={name: (None if math.isnan(R[-1, i]) else float(R[-1, i])) for i, name in enumerate(names)},
        trainable_parameters=_number(summary.get("trainable_parameters"), f"{run_dir}/summary.json: "
                                                                         "trainable_parameters"),
        seconds=seconds, setting=setting,
        hparams={k: v for k, v in sorted(hparams.items()) if k not in SETTING_HPARAMS},
    )


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _scorer_tag(entry: Any) -> str:
    if isinstance(entry, dict):
        return f"{entry.get('scorer')}/{entry.get('variant')}"
    return str(entry)


def discover(runs_dir: str | os.PathLike, metrics: Sequence[str]) -> tuple[list[RunRecord], list[tuple[str, str]]]:
    """Complete runs under ``runs_dir`` (recursively) and the skipped folders with the reason."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise UserError(f"{runs_dir}: not a folder (expected the runs root, e.g. results/runs)")
    records, skipped = [], []
    for summary_path in sorted(root.rglob("summary.json")):
        run_dir = summary_path.parent
        summary = _read_json(summary_path)
        if summary.get("complete") is not True:
            skipped.append((str(run_dir), "incomplete (resume it with mcit-bench sweep / run --resume)"))
            continue
        records.append(load_run(run_dir, metrics, summary))
    return records, skipped


# ---------------------------------------------------------------- aggregation

def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _key(d: Any) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def _differences(dicts: list[dict[str, Any]]) -> list[str]:
    """Flattened keys whose values are not the same in every dict."""
    flat = [_flatten(d) for d in dicts]
    keys = sorted(set().union(*flat))
    return [k for k in keys if len({_key(f.get(k)) for f in flat}) > 1]


def _canonical_tasks(runs: list[RunRecord]) -> list[str]:
    """Task column order: that of an order-1 run (the canonical order) if any, else the first run's."""
    first = next((r for r in runs if r.order == "1"), runs[0])
    names = list(first.tasks)
    for run in runs:
        names += [t for t in run.tasks if t not in names]
    return names


def _method_sort_key(row: Row) -> tuple:
    return (row.reference, row.method, row.label)


def build_group(index: int, runs: list[RunRecord], metrics: Sequence[str], reference: set[str]) -> Group:
    group = Group(index=index, setting=runs[0].setting, rows=[], task_names=_canonical_tasks(runs))
    by_method: dict[str, dict[str, list[RunRecord]]] = {}
    for run in runs:
        by_method.setdefault(run.method, {}).setdefault(_key(run.hparams), []).append(run)
    for method, variants in sorted(by_method.items()):
        differing = _differences([v[0].hparams for v in variants.values()]) if len(variants) > 1 else []
        if differing:
            group.notes.append(f"`{method}` was run with {len(variants)} different hyper-parameter sets "
                               f"(differing: {', '.join(differing)}): reported as separate rows, never averaged")
        for runs_of_variant in variants.values():
            label = method
            if differing:
                flat = _flatten(runs_of_variant[0].hparams)
                label += " (" + ", ".join(f"{k}={flat.get(k)}" for k in differing) + ")"
            group.rows.append(_make_row(label, method, method in reference, runs_of_variant, metrics,
                                        group.task_names, group.notes))
    group.rows.sort(key=_method_sort_key)
    _mark_best(group, metrics)
    coverage = {r.label: sorted({(x.order, x.seed) for x in r.runs}) for r in group.rows}
    if len({_key(c) for c in coverage.values()}) > 1:
        desc = "; ".join(f"{label}: " + ", ".join(f"o{o}/s{s}" for o, s in c) for label, c in coverage.items())
        group.notes.append(f"rows cover different (order, seed) sets, compare with care: {desc}")
    return group


def _make_row(label: str, method: str, is_reference: bool, runs: list[RunRecord], metrics: Sequence[str],
              task_names: list[str], notes: list[str]) -> Row:
    runs = sorted(runs, key=lambda r: (r.order, r.seed, str(r.path)))
    kept: list[RunRecord] = []
    seen: dict[tuple[str, int], Path] = {}
    for run in runs:
        if (run.order, run.seed) in seen:
            notes.append(f"`{label}`: {run.path} repeats order {run.order} seed {run.seed} of "
                         f"{seen[(run.order, run.seed)]}; only the first is counted")
            continue
        seen[(run.order, run.seed)] = run.path
        kept.append(run)
    row = Row(label=label, method=method, reference=is_reference, runs=kept)
    row.stats = {m: stat(r.metrics[m] for r in kept) for m in metrics}
    row.tasks = {t: stat(r.final.get(t) for r in kept) for t in task_names}
    row.params = stat(r.trainable_parameters for r in kept)
    row.seconds = stat(r.seconds for r in kept)
    return row


def _mark_best(group: Group, metrics: Sequence[str]) -> None:
    columns = [(m, lower_is_better(m), lambda row, m=m: row.stats[m]) for m in metrics]
    columns += [(f"task:{t}", False, lambda row, t=t: row.tasks[t]) for t in group.task_names]
    for column, lower, get in columns:
        candidates = [(round(get(r).mean, DECIMALS), r) for r in group.rows
                      if not r.reference and get(r).mean is not None]
        if len(candidates) < 2:
            continue
        best = min(v for v, _ in candidates) if lower else max(v for v, _ in candidates)
        for value, row in candidates:
            if value == best:
                row.best.add(column)


def build_leaderboard(runs_dir: str | os.PathLike, metrics: Sequence[str] = DEFAULT_METRICS,
                      reference: Sequence[str] = ("zero-shot", "joint"),
                      paper_file: str | os.PathLike | None = None) -> Leaderboard:
    metrics = check_metrics(metrics)
    paper = load_paper_results(paper_file) if paper_file else None
    records, skipped = discover(runs_dir, metrics)
    if not records:
        raise UserError(f"{runs_dir}: no complete run (summary.json with complete: true) found"
                        + (f"; {len(skipped)} incomplete" if skipped else ""))
    by_setting: dict[str, list[RunRecord]] = {}
    for run in records:
        by_setting.setdefault(_key(run.setting), []).append(run)
    # the setting with the most runs first: the main table
    ordered = sorted(by_setting.values(), key=lambda runs: (-len(runs), _key(runs[0].setting)))
    ref = {r.strip() for r in reference if r.strip()}
    groups = [build_group(i, runs, metrics, ref) for i, runs in enumerate(ordered, start=1)]
    group_notes = []
    if len(groups) > 1:
        differing = _differences([g.setting for g in groups])
        group_notes.append(f"{len(groups)} different settings found; runs of different settings are never averaged "
                           f"together and are reported in separate tables. They differ in: {', '.join(differing)}")
    return Leaderboard(str(runs_dir), list(metrics), groups, skipped, group_notes, paper)


def check_metrics(metrics: Sequence[str]) -> list[str]:
    from .metrics import summarize

    names = [m.strip() for m in metrics if m.strip()]
    probe = summarize(np.array([[50.0, 50.0], [50.0, 50.0], [50.0, 50.0]]))
    known = list(DEFAULT_METRICS) + list(probe["variants"])
    unknown = [m for m in names if m not in known]
    if unknown or not names:
        raise UserError(f"--metrics: unknown metric(s) {', '.join(unknown) or '(none given)'}; "
                        f"known: {', '.join(known)}")
    return names


# ---------------------------------------------------------------- paper-reported numbers

PAPER_STATUSES = ("verified", "absent")


def load_paper_results(path: str | os.PathLike) -> dict[str, Any]:
    """Validate the paper-results YAML (see results/paper_results.yaml for the schema)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: paper-results file not found")
    data = _read_yaml(path)
    entries = data.get("entries")
    if not isinstance(entries, list):
        raise UserError(f"{path}: field 'entries' must be a list")
    for i, entry in enumerate(entries):
        where = f"{path}: entries[{i}]"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected a mapping")
        for key in ("method", "paper", "arxiv", "source", "status"):
            if not entry.get(key):
                raise UserError(f"{where}: field {key!r} is required")
        if entry["status"] not in PAPER_STATUSES:
            raise UserError(f"{where}: field 'status' is {entry['status']!r}, expected one of {PAPER_STATUSES}")
        numbers = entry.get("metrics") or {}
        if not isinstance(numbers, dict):
            raise UserError(f"{where}: field 'metrics' must be a mapping of metric -> number")
        for key, value in numbers.items():
            _number(value, f"{where}: metrics.{key}")
        has_numbers = any(v is not None for v in numbers.values())
        if entry["status"] == "absent" and has_numbers:
            raise UserError(f"{where}: status 'absent' but metrics are given (a number that could not be verified "
                            f"must not be entered)")
        if entry["status"] == "verified" and not has_numbers and not entry.get("claim"):
            raise UserError(f"{where}: status 'verified' needs 'metrics' or a 'claim'")
    return {"path": str(path), "entries": entries}


# ---------------------------------------------------------------- formatting

def fmt_stat(s: Stat, n_runs: int, pm: str = "±", dash: str = DASH) -> str:
    if s.n == 0 or s.mean is None:
        return "n/a"
    text = f"{s.mean:.{DECIMALS}f} {pm} " + (dash if s.std is None else f"{s.std:.{DECIMALS}f}")
    if s.n != n_runs:
        text += f" (n={s.n})"
    return text


def fmt_params(s: Stat) -> str:
    if s.mean is None:
        return "n/a"
    v = s.mean
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}K"
    return f"{v:.0f}"


def fmt_seconds(s: Stat, pm: str = "±", dash: str = DASH) -> str:
    if s.mean is None:
        return "n/a"
    return f"{s.mean:.0f} {pm} " + (dash if s.std is None else f"{s.std:.0f}")


def metric_header(metric: str, up: str = "↑", down: str = "↓") -> str:
    return f"{metric} {down if lower_is_better(metric) else up}"


def describe_setting(setting: dict[str, Any]) -> str:
    budget = ", ".join(f"{k}={v}" for k, v in setting["budget"].items())
    versions = ", ".join(f"{k} {v}" for k, v in setting["versions"].items())
    scorers = ", ".join(f"{t}: {s}" for t, s in setting["scorers"].items())
    checkpoint = setting.get("backbone_checkpoint")
    backbone = setting["backbone"] + (f" ({checkpoint})" if checkpoint and checkpoint != setting["backbone"] else "")
    return (f"benchmark `{setting['benchmark']}`, backbone `{backbone}`, preset `{setting['preset']}`, "
            f"eval `{setting['eval_mode']}`, precision `{setting['precision']}`, devices `{setting['devices']}`; "
            f"budget: {budget}; scorers: {scorers or 'n/a'}; versions: {versions or 'n/a'}")


CONVENTIONS = (
    "Each cell: mean ± sample standard deviation (ddof=1) over the row's runs (task orders x seeds); "
    f"`{DASH}` = a single run; `(n=k)` = only k runs have this value (the others' is unavailable because a needed "
    "matrix cell was not evaluated, e.g. `joint` has no intermediate rows); `n/a` = unavailable in every run, "
    "never 0. Metrics are recomputed from each run's accuracy.csv. Per-task scores: last row of each matrix, "
    "aligned by task name. Best measured value per column marked (↑ higher is better, ↓ lower is better; ties at "
    "two decimals all marked); reference rows (bounds) are never marked. Time: train + eval seconds per run."
)


def _rel(path: str, output: str | None) -> str:
    """Image path as seen from the markdown file (relative links keep working in the repository)."""
    return os.path.relpath(path, Path(output).parent) if output else str(path)


def render(board: Leaderboard, fmt: str, plots: Sequence[Any] = (), output: str | None = None) -> str:
    if fmt == "md":
        return render_markdown(board, plots, output)
    if fmt == "latex":
        return render_latex(board)
    if fmt == "csv":
        return render_csv(board)
    raise UserError(f"--format {fmt!r}: expected md, latex or csv")


def _main_columns(board: Leaderboard) -> list[str]:
    return ["method", "runs", *(metric_header(m) for m in board.metrics), "trainable params", "time (s)"]


def _main_cells(row: Row, board: Leaderboard, bold: Any, pm: str = "±", dash: str = DASH) -> list[str]:
    n = len(row.runs)
    cells = [row.label + (" (ref.)" if row.reference else ""), str(n)]
    for m in board.metrics:
        text = fmt_stat(row.stats[m], n, pm, dash)
        cells.append(bold(text) if m in row.best else text)
    cells += [fmt_params(row.params), fmt_seconds(row.seconds, pm, dash)]
    return cells


def _task_cells(row: Row, group: Group, bold: Any, pm: str = "±", dash: str = DASH) -> list[str]:
    n = len(row.runs)
    cells = [row.label + (" (ref.)" if row.reference else "")]
    for t in group.task_names:
        text = fmt_stat(row.tasks[t], n, pm, dash)
        cells.append(bold(text) if f"task:{t}" in row.best else text)
    return cells


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return lines


def render_markdown(board: Leaderboard, plots: Sequence[Any] = (), output: str | None = None) -> str:
    out = ["# mcit-bench leaderboard", "",
           f"From {board.n_runs} complete run(s) under `{board.runs_dir}`"
           + (f"; {len(board.skipped)} incomplete run(s) skipped." if board.skipped else "."), "",
           CONVENTIONS, ""]
    for note in board.group_notes:
        out += [f"> **Note:** {note}", ""]

    def bold(text: str) -> str:
        return f"**{text}**"

    for group in board.groups:
        title = "Measured" if len(board.groups) == 1 else f"Measured, setting {group.index} of {len(board.groups)}"
        out += [f"## {title}", "", describe_setting(group.setting), ""]
        out += _md_table(_main_columns(board), [_main_cells(r, board, bold) for r in group.rows]) + [""]
        out += ["Final score per task (last row of each run's matrix, aligned by task name):", ""]
        out += _md_table(["method", *group.task_names], [_task_cells(r, group, bold) for r in group.rows]) + [""]
        for note in group.notes:
            out += [f"- Note: {note}"]
        if group.notes:
            out.append("")
        group_plots = [p for p in plots if p.group == group.index]
        for p in (p for p in group_plots if p.kind == "curves"):
            out += [f"![{p.title}]({_rel(p.path, output)})", ""]
        heatmaps = [p for p in group_plots if p.kind == "heatmap"]
        if heatmaps:
            out += ["Accuracy-matrix heatmaps: " + ", ".join(f"[{p.title}]({_rel(p.path, output)})" for p in heatmaps),
                    ""]
    if board.skipped:
        out += ["Skipped (incomplete) runs: " + ", ".join(f"`{p}`" for p, _ in board.skipped), ""]
    if board.paper is not None:
        out += _paper_markdown(board.paper)
    return "\n".join(out).rstrip("\n") + "\n"


def _paper_rows(paper: dict[str, Any]) -> tuple[list[dict], list[dict], list[dict], list[str]]:
    entries = paper["entries"]
    verified = [e for e in entries if e["status"] == "verified"]
    rows = [e for e in verified if any(v is not None for v in (e.get("metrics") or {}).values())]
    claims = [e for e in verified if e.get("claim")]
    absent = [e for e in entries if e["status"] == "absent"]
    keys: list[str] = []
    for e in rows:
        keys += [k for k in e["metrics"] if k not in keys]
    return rows, claims, absent, keys


def _source(e: dict[str, Any]) -> str:
    return f"{e['paper']} (arXiv {e['arxiv']}), {e['source']}"


def _paper_markdown(paper: dict[str, Any]) -> list[str]:
    rows, claims, absent, keys = _paper_rows(paper)
    out = ["## Reported in papers (not measured here)", "",
           f"From `{paper['path']}`. These numbers come from the papers' own benchmarks and backbones (e.g. UCIT or "
           "CoIN with LLaVA-1.5-7B); they are not comparable with the measured rows above and are never mixed "
           "into them.", ""]
    if rows:
        header = ["method", "benchmark", "backbone", *keys, "source"]
        body = [[e["method"], str(e.get("benchmark", "")), str(e.get("backbone", "")),
                 *("n/a" if e["metrics"].get(k) is None else f"{e['metrics'][k]:.2f}" for k in keys), _source(e)]
                for e in rows]
        out += _md_table(header, body) + [""]
    else:
        out += ["No per-metric table entry could be verified from a source reachable here.", ""]
    if claims:
        out += ["Claims stated by the papers:", ""]
        out += [f"- **{e['method']}** ({e.get('benchmark', '')}, {e.get('backbone', '')}): {e['claim']} "
                f"[{_source(e)}]" for e in claims] + [""]
    if absent:
        out += ["Not filled in (could not be verified; left absent rather than guessed):", ""]
        out += [f"- {e['method']}: {_source(e)}" + (f" — {e['note']}" if e.get("note") else "") for e in absent]
        out.append("")
    return out


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(c, c) for c in text)


def _latex_table(caption: str, header: list[str], rows: list[list[str]]) -> list[str]:
    return [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{caption}}}",
            r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
            " & ".join(header) + r" \\", r"\midrule", *(" & ".join(r) + r" \\" for r in rows),
            r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]


def render_latex(board: Leaderboard) -> str:
    pm, dash = r"$\pm$", "--"
    mark = "\0"  # prefix meaning "best": _latex_cell turns it into \textbf after escaping
    out = [f"% mcit-bench leaderboard from {board.n_runs} complete run(s) under {board.runs_dir}",
           "% requires \\usepackage{booktabs}", "% " + CONVENTIONS, ""]
    for note in board.group_notes:
        out += [f"% NOTE: {note}"]
    for group in board.groups:
        setting = latex_escape(describe_setting(group.setting).replace("`", ""))
        header = ["Method", "Runs", *(latex_escape(m) + (r" $\downarrow$" if lower_is_better(m) else r" $\uparrow$")
                                      for m in board.metrics), "Trainable params", "Time (s)"]
        rows = []
        for r in group.rows:
            cells = _main_cells(r, board, lambda t: mark + t, pm="PM", dash=dash)
            rows.append([_latex_cell(c, pm) for c in cells])
        out += _latex_table(f"Measured, setting {group.index}: {setting}. Mean $\\pm$ sample std (ddof=1) "
                            f"over task orders and seeds; best in bold.", header, rows)
        task_rows = [[_latex_cell(c, pm) for c in _task_cells(r, group, lambda t: mark + t, pm="PM", dash=dash)]
                     for r in group.rows]
        out += _latex_table(f"Final score per task (setting {group.index}), aligned by task name.",
                            ["Method", *(latex_escape(t) for t in group.task_names)], task_rows)
        out += [f"% NOTE: {n}" for n in group.notes]
    if board.paper is not None:
        rows_, claims, absent, keys = _paper_rows(board.paper)
        if rows_:
            body = [[latex_escape(e["method"]), latex_escape(str(e.get("benchmark", ""))),
                     *("n/a" if e["metrics"].get(k) is None else f"{e['metrics'][k]:.2f}" for k in keys),
                     latex_escape(f"arXiv {e['arxiv']}, {e['source']}")] for e in rows_]
            out += _latex_table("Reported in papers (other benchmarks and backbones; not comparable with the "
                                "measured rows).", ["Method", "Benchmark", *(latex_escape(k) for k in keys),
                                                    "Source"], body)
        out += [f"% paper claim: {e['method']}: {e['claim']} ({_source(e)})" for e in claims]
        out += [f"% absent (not verified): {e['method']}: {_source(e)}" for e in absent]
    return "\n".join(out).rstrip("\n") + "\n"


def _latex_cell(text: str, pm: str) -> str:
    bold = text.startswith("\0")
    body = latex_escape(text.lstrip("\0")).replace(" PM ", f" {pm} ").replace("–", "--")
    return rf"\textbf{{{body}}}" if bold else body


def render_csv(board: Leaderboard) -> str:
    """Wide CSV, one line per row; numbers unformatted, empty = null; ``<col>_best`` = ``*`` when best."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    task_names: list[str] = []
    for g in board.groups:
        task_names += [t for t in g.task_names if t not in task_names]
    header = ["setting", "method", "label", "reference", "runs", "orders_seeds"]
    for m in board.metrics:
        header += [f"{m}_mean", f"{m}_std", f"{m}_n", f"{m}_best"]
    for t in task_names:
        header += [f"task:{t}_mean", f"task:{t}_std", f"task:{t}_n", f"task:{t}_best"]
    header += ["trainable_parameters", "seconds_mean", "seconds_std", "setting_description"]
    writer.writerow(header)

    def num(v: float | None) -> str:
        return "" if v is None else repr(round(v, 6))

    for g in board.groups:
        for r in g.rows:
            line = [g.index, r.method, r.label, int(r.reference), len(r.runs),
                    " ".join(f"{x.order}/{x.seed}" for x in r.runs)]
            for m in board.metrics:
                s = r.stats[m]
                line += [num(s.mean), num(s.std), s.n, "*" if m in r.best else ""]
            for t in task_names:
                s = r.tasks.get(t, Stat(None, None, 0))
                line += [num(s.mean), num(s.std), s.n, "*" if f"task:{t}" in r.best else ""]
            line += [num(r.params.mean), num(r.seconds.mean), num(r.seconds.std),
                     describe_setting(g.setting).replace("`", "")]
            writer.writerow(line)
    return buf.getvalue()


def write_output(path: str | os.PathLike, text: str) -> None:
    from .atomic import atomic_write_text

    atomic_write_text(path, text)
