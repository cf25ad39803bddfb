"""Accuracy-matrix CSV files.

Layout (tasks named, in training order; one row per stage 0..T; empty cell = not evaluated):

    stage,<task1>,...,<taskT>
    0,<a[0][1]>,...,<a[0][T]>
    ...
    T,<a[T][1]>,...,<a[T][T]>

Reading also accepts a matrix as papers print it: the ``stage`` column says which rows are there, so a
T x T lower triangle with stages 1..T (no zero-shot row) or any other subset of stages is read with the
absent rows as missing cells (``fwd`` is then n/a). Missing cells may be empty, ``nan`` or a dash.
Reading validates everything and raises UserError with a one-line message naming the file and
the offending row/column, so a bad file is reported before any metric is computed.
"""
from __future__ import annotations

import csv
import io
import math
import os
from typing import Sequence

import numpy as np

from .rundir.atomic import atomic_write_text
from .errors import UserError
from .metrics import validate_matrix

__all__ = ["write_matrix_csv", "read_matrix_csv"]

# empty is the format; "nan" (numpy.savetxt) and the dashes and "n/a" of printed tables are tolerated
_MISSING = {"", "nan", "-", "\u2013", "\u2014", "n/a", "na"}


def _check_task_names(names: Sequence[str], where: str, err: type[Exception]) -> None:
    seen: dict[str, int] = {}
    for col, name in enumerate(names, start=2):  # column 1 is "stage"
        if not name:
            raise err(f"{where}: column {col} has an empty task name")
        if name in seen:
            raise err(f"{where}: column {col}: duplicate task name {name!r} "
                      f"(also column {seen[name]})")
        seen[name] = col


def write_matrix_csv(path: str | os.PathLike, R: np.ndarray, task_names: Sequence[str],
                     fmt: str = "%.4f", differences: bool = False) -> None:
    """Write R (shape (T+1, T), 0-100, NaN = missing) atomically; NaN becomes an empty cell.

    ``differences=True`` writes a matrix of score differences (the FGT and FWD matrices), which may
    be negative: only the shape is checked then.
    """
    if differences:
        arr = np.asarray(R, dtype=float)
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1] + 1:
            raise ValueError(f"expected a (T+1, T) matrix, got shape {arr.shape}")
    else:
        arr = validate_matrix(R)
    names = [str(n) for n in task_names]
    if len(names) != arr.shape[1]:
        raise ValueError(f"{len(names)} task names for a matrix with {arr.shape[1]} tasks")
    _check_task_names(names, str(path), ValueError)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["stage", *names])
    for t, row in enumerate(arr):
        writer.writerow([t, *("" if math.isnan(v) else fmt % v for v in row)])
    atomic_write_text(path, buf.getvalue())


def read_matrix_csv(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read a matrix CSV; return (R of shape (T+1, T) with NaN for empty cells and absent stages, task names)."""
    where = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: Excel's BOM
            rows = [r for r in csv.reader(handle) if any(c.strip() for c in r)]
    except FileNotFoundError:
        raise UserError(f"{where}: accuracy-matrix file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{where}: cannot read accuracy-matrix CSV: {exc}") from None

    if not rows:
        raise UserError(f"{where}: empty file, expected header 'stage,<task1>,...,<taskT>'")
    header = [c.strip() for c in rows[0]]
    if header[0] != "stage":
        raise UserError(f"{where}: line 1, column 1 is {header[0]!r}, expected 'stage' "
                        "(header 'stage,<task1>,...,<taskT>')")
    names = header[1:]
    if not names:
        raise UserError(f"{where}: header has no task columns after 'stage'")
    _check_task_names(names, f"{where}: line 1", UserError)
    T = len(names)

    body = rows[1:]
    if not body:
        raise UserError(f"{where}: no stage rows after the header (expected stages among 0..{T})")
    R = np.full((T + 1, T), np.nan)
    previous = -1
    for index, row in enumerate(body):
        line = index + 2
        if len(row) != T + 1:
            raise UserError(f"{where}: line {line} has {len(row)} fields, expected {T + 1} "
                            f"(stage + {T} tasks)")
        label = row[0].strip()
        if not label.isdigit() or not previous < int(label) <= T:
            expected = f"an integer in {previous + 1}..{T}" if previous < T else f"no row after stage {T}"
            raise UserError(f"{where}: line {line}, column 'stage' is {label!r}, expected {expected} "
                            f"(stages 0..{T} for {T} tasks, in increasing order, each at most once)")
        t = previous = int(label)
        for col, (name, cell) in enumerate(zip(names, row[1:]), start=2):
            text = cell.strip()
            if text.lower() in _MISSING:
                continue
            cell_at = f"{where}: stage {t}, task {name!r} (line {line}, column {col})"
            try:
                value = float(text)
            except ValueError:
                raise UserError(f"{cell_at}: {text!r} is not a number "
                                "(leave the cell empty if it was not evaluated)") from None
            if not 0.0 <= value <= 100.0:  # also rejects inf
                raise UserError(f"{cell_at}: {text!r} is outside [0, 100] "
                                "(scores are percentages)")
            R[t, col - 2] = value
    return R, names
