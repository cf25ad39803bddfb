"""Reading run folders: one complete run (summary.json, config.yaml, accuracy.csv) -> a ``RunRecord``."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..ceiling import CEILING_FILE  # the name of a ceiling's record (ceiling.py imports nothing heavy)
from ..errors import UserError, load_yaml
from ..rundir.integrity import read_sealed_json

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
    # routing / prompt-selection accuracy (%) at the last stage, for methods that identify the task
    task_identification: float | None = None
    ceiling: float | None = None  # mean single-task ceiling of the run's tasks (``mcit-bench ceiling``), if found
    ceiling_seed: int | None = None  # the seed of that ceiling (the run's own when there is one)



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
    data = load_yaml(path)
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
    from ..matrix_io import read_matrix_csv
    from ..metrics import summarize

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
    # tuning runs (`mcit-bench tune`) are never averaged with reported ones; runs older than streams: report
    setting["data_stream"] = str(summary.get("data_stream") or config.get("data_stream") or "report")
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
        task_identification=_number((summary.get("strategy") or {}).get("task_identification_last"),
                                    f"{run_dir}/summary.json: strategy.task_identification_last"),
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
    ceiling_dirs = [p.parent for p in root.rglob(CEILING_FILE)]
    ceilings = [_read_json(d / CEILING_FILE) for d in ceiling_dirs]
    for summary_path in sorted(root.rglob("summary.json")):
        run_dir = summary_path.parent
        if any(d in run_dir.parents for d in ceiling_dirs):
            continue  # a one-task run of a ceiling: read through its ceiling.json, never as a continual run
        if not (run_dir / "accuracy.csv").is_file() and (run_dir / CEILING_FILE).is_file():
            continue
        summary = _read_json(summary_path)
        if summary.get("complete") is not True:
            skipped.append((str(run_dir), _why_incomplete(run_dir)))
            continue
        records.append(load_run(run_dir, metrics, summary))
    for record in records:
        record.ceiling, record.ceiling_seed = match_ceiling(record, ceilings)
    return records, skipped


def _why_incomplete(run_dir: Path) -> str:
    """Why a run folder without a complete summary is left out: it diverged, or it is unfinished."""
    try:
        stopped = read_sealed_json(run_dir / "state.json", "run state", legacy_ok=True).get("stopped") or {}
    except UserError:  # no readable state: all that can be said is that the run is not complete
        stopped = {}
    if stopped.get("reason") == "diverged":
        return (f"diverged at stage {stopped.get('stage')} (a destroyed model is never a result; resume it with "
                f"run --resume --set lr=<smaller>)")
    return "incomplete (resume it with mcit-bench sweep / run --resume)"


def match_ceiling(run: RunRecord, ceilings: list[dict[str, Any]]) -> tuple[float | None, int | None]:
    """(mean ceiling over the run's tasks, its seed), from a complete ceiling of the same method, backbone
    checkpoint, budget and hyper-parameters; the one of the run's seed when there is one, else the lowest seed.
    (None, None) when there is none, or it lacks one of the run's tasks."""
    ranked = sorted(ceilings, key=lambda c: (c.get("seed") != run.seed, _seed_key(c.get("seed"))))
    for c in ranked:
        hp = c.get("hparams") or {}
        if c.get("complete") is not True or c.get("method") != run.method or \
                _str(c.get("backbone_checkpoint")) != run.setting.get("backbone_checkpoint") or \
                {k: hp.get(k) for k in SETTING_HPARAMS} != run.setting.get("budget") or \
                {k: v for k, v in sorted(hp.items()) if k not in SETTING_HPARAMS} != run.hparams:
            continue
        scores = c.get("scores") or {}
        if all(t in scores for t in run.tasks):
            return float(np.mean([scores[t] for t in run.tasks])), c.get("seed")
    return None, None


def _seed_key(seed: Any) -> tuple[int, Any]:
    return (0, seed) if isinstance(seed, int) else (1, str(seed))
