"""The ``tuned`` preset: best hyper-parameters per benchmark and method, written by ``mcit-bench tune``.

``results/tuning/tuned.yaml`` (one section per benchmark, one entry per method)::

    synthetic:
      lora-ft:
        values: {lr: 0.0021, lora_r: 16}
        provenance: {stream: ..., budget: ..., trials: 20, objective: ..., date: ..., study: ...}

``--preset tuned`` applies ``values`` on top of the method defaults (with the default budget). A method
that declares a search space but has no entry is an error; a method without one (zero-shot) has
nothing to tune and runs with its defaults.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError, load_yaml

DEFAULT_TUNED_FILE = "results/tuning/tuned.yaml"
HEADER = ("# Tuned hyper-parameters (`mcit-bench tune`), read by `--preset tuned`. One section per benchmark and\n"
          "# method: the best trial's values and the study's provenance. Written by the tool; edit with care.\n")


def read_tuned(path: str | Path) -> dict[str, Any]:
    """The whole file (empty when it does not exist), its shape validated."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of benchmark -> method -> {{values, provenance}}")
    for bench, methods in data.items():
        if not isinstance(methods, dict):
            raise UserError(f"{path}: field '{bench}' must be a mapping of method -> {{values, provenance}}")
        for method, entry in methods.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("values"), dict):
                raise UserError(f"{path}: field '{bench}.{method}.values' must be a mapping of hyper-parameter "
                                f"-> value")
    return data


def tuned_entry(path: str | Path, benchmark: str, method: str, hparams: dict[str, Any],
                has_search_space: bool) -> dict[str, Any]:
    """``{"values": ..., "provenance": ...}`` for ``method`` on ``benchmark``, validated against ``hparams``."""
    entry = (read_tuned(path).get(benchmark) or {}).get(method)
    if entry is None:
        if not has_search_space:
            return {"values": {}, "provenance": {"note": f"{method} declares no search space: nothing to tune, "
                                                         f"its defaults are used"}}
        where = f"{path}" if Path(path).is_file() else f"{path} (missing)"
        raise UserError(f"{where}: no tuned values for method {method!r} on benchmark {benchmark!r}; run "
                        f"`mcit-bench tune --method {method} --benchmark {benchmark}` first")
    unknown = sorted(set(entry["values"]) - set(hparams))
    if unknown:
        raise UserError(f"{path}: field '{benchmark}.{method}.values': unknown key(s) {', '.join(unknown)}, not "
                        f"hyper-parameters of {method!r}")
    return {"values": dict(entry["values"]), "provenance": dict(entry.get("provenance") or {})}


def write_tuned(path: str | Path, benchmark: str, method: str, values: dict[str, Any],
                provenance: dict[str, Any]) -> None:
    """Set one (benchmark, method) entry, keeping every other one (atomic rewrite)."""
    from ..rundir.atomic import atomic_write_text

    data = read_tuned(path)
    data.setdefault(benchmark, {})[method] = {"values": values, "provenance": provenance}
    ordered = {b: dict(sorted(m.items())) for b, m in sorted(data.items())}
    atomic_write_text(path, HEADER + yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False))
