"""Run configuration: presets, training defaults, method hyper-parameters and ``--set`` overrides.

Precedence (later wins): ``TRAIN_DEFAULTS`` < method defaults (class + YAML) < preset < ``--set``.
Everything is resolved and validated before any model is loaded; the resolved config is written
to ``config.yaml`` in the run folder.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError, load_yaml, yaml_problem

# Training budget and optimiser settings shared by every method.
TRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "weight_decay": 0.0,
    "batch_size": 16,
    # 550: chart is learned late and abruptly. Bars listed left to right, trained alone from the r5
    # backbone: 42 at 350 steps, 46 at 450, 100 at 520 and 600; canonical options (the default): 100
    # after icons + scene_caption and after styles at 550. lora-ft's order-3 diagonal: 70.5 at 350 steps,
    # 82.2 at 520 (bars left to right), 84.2 at 550 (canonical), ~0.08 s per step on 2 cores. Recipe r6
    # (chart 93 at zero shot): order-3 diagonal 82.7 at 550 steps, 77.0 at 125 (docs/builtin-benchmark.md).
    "steps_per_task": 550,
    "warmup_ratio": 0.03,
    "grad_clip": 1.0,
    # AdamW's fused kernel (CPU, CUDA) instead of torch's per-tensor loop: 2 ms instead of 5 ms of a ~90 ms
    # built-in step, 1.3% of a default run's training; off by default because its last-bit rounding changes
    # the matrix like another seed (lora-ft order 3: avg 46.95 -> 39.98, mft 82.69 -> 81.92, docs/performance.md)
    "fused_optimizer": False,
    # training health (divergence.LossHealth): stop when the lm loss sits within health_uniform_tol nats of
    # ln(vocabulary) or above health_rise x the first steps' mean for health_window steps in a row (0 = off)
    "health_window": 2,
    "health_uniform_tol": 0.02,
    "health_rise": 3.0,
    "eval_batch_size": 100,
    # MiB of per-record training encodings kept in memory (0 = none): later epochs skip image decoding,
    # image processing and tokenization
    "collate_cache_mb": 512,
    "eval_max_new_tokens": None,  # caps each task's own max_new_tokens (None: no cap, the native budgets)
    # shifted pairings that give the zero-shot row its shuffled chance level and p-value (evaluation.py);
    # each one re-scores stage 0 (cheap, except Java-backed caption metrics on 3000 records); 0 = off
    "chance_shifts": 19,
    # records per task; None = the benchmark's default (synthetic: 2000 / 100; real benchmarks: all records)
    "train_size": None,
    "test_size": None,
    # real benchmarks: a record count differing from the release's is an error (false: run on a subset)
    "strict_counts": True,
    # conversation template; None = sidecar, else the benchmark's native one, else the family's (templates.py)
    "template": None,
}

QUICK_MAX_NEW_TOKENS = 32

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # Smoke tests: every code path, well under a minute once the backbone is cached. On a real benchmark
    # the sizes pick a deterministic subset of each task (counts are still checked on the full files).
    # Answers are capped at 32 new tokens: CoIN's native budgets (1024) on a tiny model that rarely stops
    # made a quick CoIN run take 14 minutes on 2 cores.
    "quick": {"train_size": 32, "test_size": 8, "steps_per_task": 4, "batch_size": 8, "eval_batch_size": 16,
              "eval_max_new_tokens": QUICK_MAX_NEW_TOKENS},
    # The best values of `mcit-bench tune` for (benchmark, method), read from the tuned file (tuned.py) with
    # the default budget; the values are filled in per run by `runner.plan_run`.
    "tuned": {},
}
STREAMS = ("report", "tuning")  # report: what results are reported on; tuning: `mcit-bench tune`'s disjoint data


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
    accelerator: str = "auto"  # Lightning picks the GPUs when there are some
    devices: Any = 1
    num_nodes: int = 1  # Lightning's num_nodes: machines of ``devices`` processes each
    strategy: str = "auto"  # Lightning strategy: ddp, fsdp, deepspeed_stage_2, ...
    precision: str = "32-true"
    logger: str = "csv"  # csv | tensorboard | wandb | none
    data_root: str | None = None
    image_root: str | None = None
    data_stream: str = "report"  # report | tuning (another generator seed / a validation split: benchmark loaders)
    tuned_file: str | None = None  # --preset tuned: the tuned values file (None = results/tuning/tuned.yaml)
    # task -> scorer variant replacing the benchmark's (``--scorer-variant ScienceQA=coin_skip_absent``)
    scorer_variants: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)  # resolved
    task_subset: list[str] | None = None  # train these tasks only, in this order (e.g. one task: a ceiling)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_scorer_variants(items: list[str]) -> dict[str, str]:
    """``["ScienceQA=coin_skip_absent"]`` -> ``{"ScienceQA": "coin_skip_absent"}`` (checked against the
    benchmark's tasks and the scorers' variants once the benchmark is loaded)."""
    out: dict[str, str] = {}
    for item in items:
        task, sep, variant = item.partition("=")
        if not sep or not task.strip() or not variant.strip():
            raise UserError(f"--scorer-variant {item!r}: expected TASK=VARIANT")
        out[task.strip()] = variant.strip()
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["lr=1e-4", "rank=8"]`` -> ``{"lr": 1e-4, "rank": 8}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads `5e-3` (no dot) as a string; a researcher means the number
        out[key.strip()] = value
    return out


def resolve_hparams(method_defaults: dict[str, Any], preset: str, overrides: dict[str, Any],
                    method_name: str, preset_values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge defaults, preset and overrides; ``preset_values`` replaces ``PRESETS[preset]`` (the tuned preset)."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    merged = {**TRAIN_DEFAULTS, **method_defaults, **(PRESETS[preset] if preset_values is None else preset_values)}
    unknown = sorted(set(overrides) - set(merged))
    if unknown:
        raise UserError(f"--set: unknown key(s) {', '.join(unknown)} for method {method_name!r}; "
                        f"valid keys: {', '.join(sorted(merged))}")
    for key, value in overrides.items():
        default = merged[key]
        if key in ("train_size", "test_size") and value is not None and \
                (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise UserError(f"--set {key}={value!r}: expected a positive integer or null (all records)")
        if key == "eval_max_new_tokens":  # null lifts a cap (the quick preset's 32)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise UserError(f"--set {key}={value!r}: expected a positive integer or null (no cap)")
            continue
        if isinstance(default, bool) and not isinstance(value, bool):
            raise UserError(f"--set {key}={value!r}: expected true/false")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and not isinstance(value, (int, float)):
            raise UserError(f"--set {key}={value!r}: expected a number")
    merged.update(overrides)
    return merged


def load_order(order: str, task_names: list[str], benchmark: str | None = None) -> list[str]:
    """Task order by number or by path to a YAML file.

    A YAML order holds ``tasks``: a list of task names or of indices into the canonical order. Number K is
    ``task_orders/<benchmark>/order<K>.yaml`` when the benchmark has its own orders (CoIN), else the shared
    ``task_orders/order<K>.yaml`` (the six-task Latin square of synthetic and UCIT); a numbered order must
    cover every task of the benchmark.
    """
    from importlib.resources import files

    path = Path(order)
    numbered = not path.is_file()
    if numbered:
        if not str(order).isdigit():
            raise UserError(f"unknown order {order!r}: give a number (see `mcit-bench list`) or a YAML file path")
        folder = Path(str(files("mcit_bench.task_orders")))
        own = benchmark is not None and (folder / benchmark).is_dir()
        folder, where = (folder / benchmark, f"task_orders/{benchmark}/") if own else (folder, "task_orders/")
        path = folder / f"order{int(order)}.yaml"
        if not path.is_file():
            raise UserError(f"unknown order {order!r}: no {where}order{int(order)}.yaml; "
                            f"known: {', '.join(list_orders(benchmark))}")
    data = load_yaml(path)
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
    if numbered and len(names) != len(task_names):
        raise UserError(f"{path}: field 'tasks' has {len(names)} tasks but the benchmark has {len(task_names)}; "
                        f"built-in orders: {', '.join(list_orders(benchmark))}")
    return names


def list_orders(benchmark: str | None = None) -> list[str]:
    """Numbers of the built-in orders (of ``benchmark``'s own folder when it has one)."""
    from importlib.resources import files

    folder = Path(str(files("mcit_bench.task_orders")))
    if benchmark is not None and (folder / benchmark).is_dir():
        folder = folder / benchmark
    return sorted((p.name[len("order"):-len(".yaml")] for p in folder.iterdir()
                   if p.name.startswith("order") and p.name.endswith(".yaml")), key=lambda k: (len(k), k))


def order_tasks(benchmark: str, task_names: list[str]) -> list[tuple[str, list[str]]]:
    """Each built-in order of ``benchmark`` (canonical tasks ``task_names``): its number and its task sequence."""
    return [(number, load_order(number, task_names, benchmark)) for number in list_orders(benchmark)]
