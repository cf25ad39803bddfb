"""Accuracy-matrix CSV files.

Layout (tasks named, in training order; one row per stage 0..T; empty cell = not evaluated):

    stage,<task1>,...,<taskT>
    0,<a[0][1]>,...,<a[0][T]>
    ...
    T,<a[T][1]>,...,<a[T][T]>

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

from .atomic import atomic_write_text
from .errors import UserError
from .metrics import validate_matrix

__all__ = ["write_matrix_csv", "read_matrix_csv"]

_MISSING = {"", "nan"}  # empty is the format; "nan" tolerated (numpy.savetxt writes it)


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
    """Read a matrix CSV; return (R of shape (T+1, T) with NaN for empty cells, task names)."""
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
    if len(body) != T + 1:
        raise UserError(f"{where}: {len(body)} stage rows, expected T+1 = {T + 1} "
                        f"(stages 0..{T} for {T} tasks)")
    R = np.full((T + 1, T), np.nan)
    for t, row in enumerate(body):
        line = t + 2
        if len(row) != T + 1:
            raise UserError(f"{where}: line {line} has {len(row)} fields, expected {T + 1} "
                            f"(stage + {T} tasks)")
        if row[0].strip() != str(t):
            raise UserError(f"{where}: line {line}, column 'stage' is {row[0].strip()!r}, "
                            f"expected {t} (stages must be exactly 0..{T} in order)")
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
