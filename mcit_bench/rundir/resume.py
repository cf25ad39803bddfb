"""``--resume``: check a run folder before any work (intact files, same experiment) and say what changes.

A resumed run must be the same experiment: method, benchmark, backbone, seed, preset, evaluation mode,
task order and every hyper-parameter that shapes the model or the data stay as they were. The
optimisation settings (``RESUMABLE``: learning rates, schedule, budget, batch sizes) may change for the
stages not yet trained, e.g. after a divergence (``--resume --set lr=...``); each change is recorded in
``config.yaml`` and ``summary.json`` (``hparam_changes``: from which stage which values held).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError, yaml_problem

# Settings that only steer how the next stages are optimised (or cost): safe to change between stages.
RESUMABLE = ("lr", "weight_decay", "warmup_ratio", "grad_clip", "steps_per_task", "batch_size", "eval_batch_size",
             "collate_cache_mb", "lora_dropout", "health_window", "health_uniform_tol", "health_rise")
SAME_RUN = ("method", "benchmark", "backbone", "seed", "preset", "eval_mode")


def resumable(key: str) -> bool:
    """Learning rates of any part (``lr``, ``prompt_lr_ratio``, ...) and the schedule keys above."""
    return key in RESUMABLE or "lr" in key.split("_")


@dataclass
class ResumeInfo:
    trained: list[int] = field(default_factory=list)
    complete: bool = False
    changes: list[dict[str, Any]] = field(default_factory=list)  # recorded ones, oldest first
    new_change: dict[str, Any] | None = None  # {"from_stage": s, "set": {key: value}} to record now


def effective_hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The hyper-parameters in force after every recorded change of ``config.yaml``."""
    hparams = dict(config.get("hparams") or {})
    for change in config.get("hparam_changes") or []:
        hparams.update(change["set"])
    return hparams


def check_resume(run_dir: Path, now: dict[str, Any], hparams: dict[str, Any], order: list[str]) -> ResumeInfo:
    """Validate an existing run folder against this configuration (``now``: the SAME_RUN fields).

    Reads ``config.yaml``, the checksummed ``state.json`` and the checkpoint of the last trained stage;
    any damage or mismatch is a UserError naming the file.
    """
    from .checkpoints import verify_checkpoint
    from .integrity import read_sealed_json

    config_path = run_dir / "config.yaml"
    try:
        config = yaml.safe_load(config_path.read_text())
    except FileNotFoundError:
        raise UserError(f"{config_path}: missing, but {run_dir}/state.json exists; cannot tell which run this "
                        "is: move the folder away to start again") from None
    except OSError as exc:
        raise UserError(f"{config_path}: unreadable ({str(exc).splitlines()[0]})") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{config_path}: malformed YAML at {yaml_problem(exc)}") from None
    if not isinstance(config, dict):
        raise UserError(f"{config_path}: expected a mapping of the run's settings")
    for key in SAME_RUN:
        if str(config.get(key)) != str(now[key]):
            raise UserError(f"{config_path}: --resume with {key}={now[key]!r} but the run was started with "
                            f"{key}={config.get(key)!r}")
    if config.get("tasks") != order:
        raise UserError(f"{config_path}: --resume with task order {order} but the run was started with "
                        f"{config.get('tasks')}")
    before = effective_hparams(config)
    changed = sorted(k for k in set(before) | set(hparams) if before.get(k) != hparams.get(k))
    fixed = [k for k in changed if not resumable(k)]
    if fixed:
        k = fixed[0]
        raise UserError(f"{config_path}: --resume with {k}={hparams.get(k)!r} but the run was started with "
                        f"{k}={before.get(k)!r}; only optimisation settings may change on resume "
                        f"({', '.join(RESUMABLE)}, learning rates)")

    try:
        state = read_sealed_json(run_dir / "state.json", "run state")
    except UserError:
        # a state without checksum predates checksums: fine for a complete run (nothing is loaded), and a
        # damaged one raises again here
        state = read_sealed_json(run_dir / "state.json", "run state", legacy_ok=True)
        if not state.get("complete"):
            raise
    trained = sorted(int(s) for s in state.get("trained", []))
    complete = bool(state.get("complete"))
    info = ResumeInfo(trained=trained, complete=complete, changes=list(config.get("hparam_changes") or []))
    if complete:
        if changed:
            raise UserError(f"{config_path}: the run is complete; nothing is left to train with "
                            f"{', '.join(f'{k}={hparams.get(k)!r}' for k in changed)}")
        return info
    if trained:
        verify_checkpoint(run_dir, trained[-1])
    if changed:
        info.new_change = {"from_stage": (trained[-1] if trained else 0) + 1,
                           "set": {k: hparams.get(k) for k in changed}}
    return info


def record_change(run_dir: Path, change: dict[str, Any]) -> list[dict[str, Any]]:
    """Append ``change`` to ``config.yaml``'s ``hparam_changes``; returns the whole list."""
    from .atomic import atomic_write_text

    path = run_dir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    changes = [c for c in config.get("hparam_changes") or [] if c["from_stage"] < change["from_stage"]]
    changes.append(change)
    config["hparam_changes"] = changes
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))
    return changes
