"""Run configuration: presets, training defaults, method hyper-parameters and ``--set`` overrides.

Precedence (later wins): ``TRAIN_DEFAULTS`` < method defaults (class + YAML) < preset < ``--set``.
Everything is resolved and validated before any model is loaded; the resolved config is written
to ``config.yaml`` in the run folder.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

# Training budget and optimiser settings shared by every method.
TRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "weight_decay": 0.0,
    "batch_size": 16,
    "steps_per_task": 200,
    "warmup_ratio": 0.03,
    "grad_clip": 1.0,
    "eval_batch_size": 100,
    "eval_max_new_tokens": None,  # None: each task's own max_new_tokens
    "train_size": 600,  # records per task (built-in benchmark)
    "test_size": 100,
}

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # Smoke tests: every code path, well under a minute once the backbone is cached.
    "quick": {"train_size": 32, "test_size": 8, "steps_per_task": 4, "batch_size": 8, "eval_batch_size": 16},
}


@dataclass
class RunConfig:
    method: str
    order: str = "1"
    benchmark: str = "synthetic"
    backbone: str = "tiny-llava"
    seed: int = 0
    preset: str = "default"
    output: str | None = None
    resume: bool = False
    eval_mode: str = "full"  # full | lower
    accelerator: str = "cpu"
    devices: Any = 1
    strategy: str = "auto"  # Lightning strategy: ddp, fsdp, deepspeed_stage_2, ...
    precision: str = "32-true"
    logger: str = "csv"  # csv | tensorboard | wandb | none
    data_root: str | None = None
    image_root: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)  # resolved

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["lr=1e-4", "rank=8"]`` -> ``{"lr": 1e-4, "rank": 8}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def resolve_hparams(method_defaults: dict[str, Any], preset: str, overrides: dict[str, Any],
                    method_name: str) -> dict[str, Any]:
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    merged = {**TRAIN_DEFAULTS, **method_defaults, **PRESETS[preset]}
    unknown = sorted(set(overrides) - set(merged))
    if unknown:
        raise UserError(f"--set: unknown key(s) {', '.join(unknown)} for method {method_name!r}; "
                        f"valid keys: {', '.join(sorted(merged))}")
    for key, value in overrides.items():
        default = merged[key]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise UserError(f"--set {key}={value!r}: expected true/false")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and not isinstance(value, (int, float)):
            raise UserError(f"--set {key}={value!r}: expected a number")
    merged.update(overrides)
    return merged


def load_order(order: str, task_names: list[str]) -> list[str]:
    """Task order by number (``task_orders/order<K>.yaml``) or by path to a YAML file.

    A YAML order holds ``tasks``: a list of task names or of indices into the canonical order.
    """
    from importlib.resources import files

    path = Path(order)
    if not path.is_file():
        if not str(order).isdigit():
            raise UserError(f"unknown order {order!r}: give a number (see `mcit-bench list`) or a YAML file path")
        path = Path(str(files("mcit_bench.task_orders") / f"order{int(order)}.yaml"))
        if not path.is_file():
            raise UserError(f"unknown order {order!r}: no task_orders/order{int(order)}.yaml; "
                            f"known: {', '.join(list_orders())}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise UserError(f"{path}: field 'tasks' must be a list of task names or indices")
    names = []
    for item in data["tasks"]:
        if isinstance(item, int) and 0 <= item < len(task_names):
            names.append(task_names[item])
        elif isinstance(item, str) and item in task_names:
            names.append(item)
        else:
            raise UserError(f"{path}: field 'tasks': {item!r} is not a task index 0..{len(task_names) - 1} "
                            f"or a task name ({', '.join(task_names)})")
    if len(set(names)) != len(names):
        raise UserError(f"{path}: field 'tasks' lists a task twice")
    return names


def list_orders() -> list[str]:
    from importlib.resources import files

    folder = files("mcit_bench.task_orders")
    return sorted(p.name[len("order"):-len(".yaml")] for p in folder.iterdir()
                  if p.name.startswith("order") and p.name.endswith(".yaml"))
