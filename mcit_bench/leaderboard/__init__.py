"""``mcit-bench leaderboard``: aggregate complete run folders into one row per method.

Modules: ``records`` (reading run folders), ``statistics`` (mean/std and paired tests), ``aggregate``
(runs -> settings -> rows), ``paper`` (paper-reported numbers), ``render`` (markdown, LaTeX, CSV).

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

from .aggregate import Group, Leaderboard, Row, build_group, build_leaderboard, check_metrics
from .paper import load_paper_results
from .records import DEFAULT_METRICS, RunRecord, discover, load_run, lower_is_better
from .render import render, render_csv, render_latex, render_markdown, write_output
from .statistics import Stat, stat

__all__ = ["DEFAULT_METRICS", "Group", "Leaderboard", "Row", "RunRecord", "Stat", "build_group", "build_leaderboard",
           "check_metrics", "discover", "load_paper_results", "load_run", "lower_is_better", "render", "render_csv",
           "render_latex", "render_markdown", "stat", "write_output"]
