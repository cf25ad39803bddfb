"""Aggregation: complete runs -> one table per setting -> one row per (method, hyper-parameters)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import UserError
from ..metrics import diagonal
from .paper import load_paper_results
from .records import DECIMALS, DEFAULT_METRICS, RunRecord, discover, lower_is_better
from .statistics import Paired, Stat, paired_comparison, stat


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
    paired: Paired | None = None  # against the baseline row over the same (order, seed) runs
    # single-task ceiling (beside mft): one value per ceiling seed, not per run (every order has the same tasks)
    ceiling: Stat = field(default_factory=lambda: Stat(None, None, 0))
    task_id: Stat = field(default_factory=lambda: Stat(None, None, 0))  # routing / selection accuracy (%)
    # a[t][t] by position t in the order, over the row's runs: does learning a task cost more the later it comes?
    by_position: list[Stat] = field(default_factory=list)


@dataclass
class Group:
    index: int
    setting: dict[str, Any]
    rows: list[Row]
    task_names: list[str]
    notes: list[str] = field(default_factory=list)
    baseline: str | None = None  # label of the row the others are paired against (None: no such row)


@dataclass
class Leaderboard:
    runs_dir: str
    metrics: list[str]
    groups: list[Group]
    skipped: list[tuple[str, str]]
    group_notes: list[str]
    paper: dict[str, Any] | None = None
    baseline: str | None = None  # method every row is paired against ("" / None: no paired column)
    paired_metric: str = "last"

    @property
    def n_runs(self) -> int:
        return sum(len(r.runs) for g in self.groups for r in g.rows)


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


def build_group(index: int, runs: list[RunRecord], metrics: Sequence[str], reference: set[str],
                baseline: str | None = None, paired_metric: str = "last") -> Group:
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
    _pair_with_baseline(group, baseline, paired_metric)
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
    row.ceiling = stat({r.ceiling_seed: r.ceiling for r in kept if r.ceiling is not None}.values())
    row.task_id = stat(r.task_identification for r in kept)
    # one setting has one task set, so every run's diagonal has the same length
    row.by_position = [stat(cells) for cells in zip(*(diagonal(r.matrix) for r in kept))]
    return row


def _pair_with_baseline(group: Group, baseline: str | None, metric: str) -> None:
    """Each row's ``metric`` against the baseline method's over the (order, seed) runs both have."""
    if not baseline:
        return
    base_rows = [r for r in group.rows if r.method == baseline]
    if len(base_rows) != 1:
        if base_rows:
            group.notes.append(f"`{baseline}` has {len(base_rows)} hyper-parameter sets in this table: no paired "
                               f"comparison (the baseline must be one row)")
        return
    base = base_rows[0]
    group.baseline = base.label
    reference = {(r.order, r.seed): r.metrics.get(metric) for r in base.runs}
    for row in group.rows:
        if row is not base:
            row.paired = paired_comparison({(r.order, r.seed): r.metrics.get(metric) for r in row.runs}, reference)


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
                      paper_file: str | os.PathLike | None = None, baseline: str | None = "lora-ft",
                      paired_metric: str = "last") -> Leaderboard:
    metrics = check_metrics(metrics)
    try:
        paired_metric = check_metrics([paired_metric])[0]
    except UserError as exc:
        raise UserError(str(exc).replace("--metrics", "--paired-metric", 1)) from None
    paper = load_paper_results(paper_file) if paper_file else None
    records, skipped = discover(runs_dir, [*metrics, *([paired_metric] if paired_metric not in metrics else [])])
    if not records:
        raise UserError(f"{runs_dir}: no complete run (summary.json with complete: true) found"
                        + "".join(f"; skipped {folder}: {why}" for folder, why in skipped))
    by_setting: dict[str, list[RunRecord]] = {}
    for run in records:
        by_setting.setdefault(_key(run.setting), []).append(run)
    # the setting with the most runs first: the main table
    ordered = sorted(by_setting.values(), key=lambda runs: (-len(runs), _key(runs[0].setting)))
    ref = {r.strip() for r in reference if r.strip()}
    groups = [build_group(i, runs, metrics, ref, baseline, paired_metric) for i, runs in enumerate(ordered, start=1)]
    group_notes = []
    if len(groups) > 1:
        differing = _differences([g.setting for g in groups])
        group_notes.append(f"{len(groups)} different settings found; runs of different settings are never averaged "
                           f"together and are reported in separate tables. They differ in: {', '.join(differing)}")
    return Leaderboard(str(runs_dir), list(metrics), groups, skipped, group_notes, paper, baseline or None,
                       paired_metric)


def check_metrics(metrics: Sequence[str]) -> list[str]:
    from ..metrics import summarize

    names = [m.strip() for m in metrics if m.strip()]
    probe = summarize(np.array([[50.0, 50.0], [50.0, 50.0], [50.0, 50.0]]))
    known = list(DEFAULT_METRICS) + list(probe["variants"])
    unknown = [m for m in names if m not in known]
    if unknown or not names:
        raise UserError(f"--metrics: unknown metric(s) {', '.join(unknown) or '(none given)'}; "
                        f"known: {', '.join(known)}")
    return names
