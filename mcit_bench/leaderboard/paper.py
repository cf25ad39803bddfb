"""Paper-reported numbers (``results/paper_results.yaml``): validated, shown apart, never mixed in."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .records import _number, _read_yaml
from ..errors import UserError

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
