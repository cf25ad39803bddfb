"""User-facing errors: bad input is reported in one line with exit code 2."""
from __future__ import annotations

from pathlib import Path
from typing import Any


class UserError(Exception):
    """Bad user input (file, field, value). The CLI prints it on one line and exits with code 2.

    Raise it BEFORE any expensive work starts and before anything is written.
    """

    exit_code = 2


class RunError(Exception):
    """A run that cannot go on (diverged, disk full, folder locked by another job): one line, exit code 1.

    The message says what happened, where, and how to continue; what was already written stays valid.
    """

    exit_code = 1


class WriteError(RunError, OSError):
    """An ``OSError`` while writing a result file (disk full, folder unwritable), naming the file."""

    def __str__(self) -> str:
        return str(self.strerror)


def load_yaml(path: Any) -> Any:
    """``yaml.safe_load`` of a file; malformed YAML is a UserError naming the file, line and column (the one
    reader of every YAML file the harness is given: orders, method defaults, tuned values, run configs)."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: malformed YAML at {yaml_problem(exc)}") from None


def yaml_problem(exc: Exception) -> str:
    """``line L, column C: <problem>`` of a ``yaml.YAMLError`` (1-based, as editors count), else its first line."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
