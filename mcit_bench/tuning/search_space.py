"""Search spaces for ``mcit-bench tune``: declared under ``search_space:`` in ``<module>.yaml`` beside a method.

Format (one entry per tuned hyper-parameter)::

    search_space:
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      prompt_length: {type: int, low: 2, high: 10}          # optional: step, log
      merge: {type: categorical, choices: [both, cpm, lpm]}

A key must be a hyper-parameter of the method and must not be a budget key shared by every method
(``steps_per_task``, ``train_size``, ...: tuning them would compare methods on different budgets).
A method without the section (zero-shot) has nothing to tune.
"""
from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from ..errors import UserError, load_yaml

SECTION = "search_space"
TYPES = ("float", "int", "categorical")
# Keys that define the data and the training budget: the same for every method of a comparison.
BUDGET_KEYS = ("train_size", "test_size", "steps_per_task", "batch_size", "eval_batch_size", "eval_max_new_tokens",
               "collate_cache_mb", "chance_shifts", "strict_counts", "template")
_FIELDS = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
           "categorical": {"type", "choices"}}
_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


@dataclass(frozen=True)
class Param:
    """One tuned hyper-parameter: a float or int range (optionally log-scaled or stepped) or a choice."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial proposes for this parameter."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def describe(self) -> str:
        if self.type == "categorical":
            return f"{{{', '.join(map(str, self.choices))}}}"
        scale = ", log" if self.log else (f", step {self.step:g}" if self.step else "")
        return f"{self.type} [{self.low:g}, {self.high:g}{scale}]"


def yaml_path(cls: type) -> Path | None:
    """``<module>.yaml`` beside the module that defines ``cls`` (None for classes without a file)."""
    try:
        return Path(inspect.getfile(cls)).with_suffix(".yaml")
    except TypeError:
        return None


def read_method_yaml(path: Path) -> dict[str, Any]:
    loaded = load_yaml(path) or {}
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: expected a mapping of hyper-parameters, got {type(loaded).__name__}")
    return loaded


def search_space(cls: type, hparams: dict[str, Any]) -> dict[str, Param]:
    """The validated search space of method ``cls`` (empty when it declares none).

    ``hparams``: the method's resolved hyper-parameters (training defaults + method defaults): the keys
    a search space may name.
    """
    path = yaml_path(cls)
    if path is None or not path.is_file():
        return {}
    raw = read_method_yaml(path).get(SECTION)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: field '{SECTION}' must be a mapping of hyper-parameter -> range, "
                        f"got {type(raw).__name__}")
    return {str(key): parse_param(str(key), entry, hparams, f"{path}: field '{SECTION}.{key}'")
            for key, entry in raw.items()}


def _number(value: Any, where: str, field: str) -> float:
    if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads `1e-4` (no dot) as a string
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: '{field}' must be a number, got {value!r}")
    return float(value)


def parse_param(name: str, entry: Any, hparams: dict[str, Any], where: str) -> Param:
    """One search-space entry, validated against the method's hyper-parameters (UserError naming ``where``)."""
    if name not in hparams:
        raise UserError(f"{where}: unknown key {name!r}, not a hyper-parameter of the method; "
                        f"valid keys: {', '.join(sorted(k for k in hparams if k not in BUDGET_KEYS))}")
    if name in BUDGET_KEYS:
        raise UserError(f"{where}: {name!r} is part of the budget shared by every method and cannot be tuned")
    if not isinstance(entry, dict):
        raise UserError(f"{where}: expected a mapping such as {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}, "
                        f"got {entry!r}")
    kind = entry.get("type")
    if kind not in TYPES:
        raise UserError(f"{where}: 'type' must be one of {', '.join(TYPES)}, got {kind!r}")
    extra = sorted(set(entry) - _FIELDS[kind])
    if extra:
        raise UserError(f"{where}: unknown field(s) {', '.join(map(str, extra))} for type {kind}; "
                        f"expected {', '.join(sorted(_FIELDS[kind]))}")
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices or \
                not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise UserError(f"{where}: 'choices' must be a non-empty list of numbers, strings or booleans")
        if len(set(map(repr, choices))) != len(choices):
            raise UserError(f"{where}: 'choices' lists a value twice")
        return Param(name, kind, choices=tuple(choices))
    for field in ("low", "high"):
        if field not in entry:
            raise UserError(f"{where}: '{field}' is required for type {kind}")
    low, high = _number(entry["low"], where, "low"), _number(entry["high"], where, "high")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise UserError(f"{where}: 'log' must be true or false, got {log!r}")
    step = None if entry.get("step") is None else _number(entry["step"], where, "step")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise UserError(f"{where}: 'low', 'high' and 'step' must be integers for type int")
    if not low < high:
        raise UserError(f"{where}: 'low' ({low:g}) must be below 'high' ({high:g})")
    if log and low <= 0:
        raise UserError(f"{where}: 'low' must be > 0 with log: true, got {low:g}")
    if step is not None and (step <= 0 or log):
        raise UserError(f"{where}: 'step' must be > 0 and cannot be combined with log: true")
    return Param(name, kind, low=low, high=high, log=log, step=step)
