"""What a benchmark is: an ordered set of tasks, each with train/test splits and a scorer.

Records follow the canonical format (one dict per sample; docs/real-data.md):
``uid, image (PIL), prompt, target, references (list[str]), choices (list[str])``.
Splits are served as Hugging Face ``datasets.Dataset`` objects.
"""
from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .errors import UserError

if TYPE_CHECKING:  # keep `mcit-bench --help` free of heavy imports
    import datasets


@dataclass(frozen=True)
class TaskSpec:
    """One task of a benchmark.

    ``scorer``/``scorer_variant`` name an entry of ``mcit_bench.scorers``; ``chance`` is the score (0-100)
    of uniform guessing where it is defined (closed answer sets), else None.
    """

    name: str
    analogue: str
    scorer: str
    scorer_variant: str | None = None
    chance: float | None = None
    max_new_tokens: int = 16  # greedy decoding budget of the native evaluation (UCIT: 128)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Benchmark:
    """A loaded benchmark: tasks in canonical order plus split accessors.

    ``template``: the conversation template of the benchmark's native pipeline (UCIT/CoIN: vicuna_v1, as
    LLaVA-1.5 was evaluated); a LLaVA backbone without its own sidecar template uses it (see templates.py).
    """

    name: str
    tasks: list[TaskSpec]
    train_split: Callable[[str], "datasets.Dataset"]
    test_split: Callable[[str], "datasets.Dataset"]
    pretraining_split: Callable[[], "datasets.Dataset"] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    template: str | None = None

    def task(self, name: str) -> TaskSpec:
        for spec in self.tasks:
            if spec.name == name:
                return spec
        raise UserError(f"benchmark {self.name!r} has no task {name!r}; tasks: {', '.join(self.task_names)}")

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]


def with_scorer_variants(benchmark: Benchmark, variants: dict[str, str]) -> Benchmark:
    """The benchmark with the scorer variant of some tasks replaced (a named alternative of the task's
    scorer, e.g. ScienceQA's ``coin_skip_absent``); unknown tasks or variants are a UserError."""
    from dataclasses import replace

    from .scorers import get_scorer

    for task, variant in variants.items():
        try:
            get_scorer(benchmark.task(task).scorer, variant)
        except UserError as exc:
            raise UserError(f"--scorer-variant {task}={variant}: {exc}") from exc
    if variants:
        benchmark.tasks = [replace(t, scorer_variant=variants.get(t.name, t.scorer_variant)) for t in benchmark.tasks]
    return benchmark


# name -> "module:function" returning a Benchmark; imported lazily so listing stays cheap.
BENCHMARKS: dict[str, str] = {
    "synthetic": "mcit_bench.benchmarks.synthetic:load_synthetic",
    "ucit": "mcit_bench.benchmarks.ucit:load_ucit",
    "coin": "mcit_bench.benchmarks.coin:load_coin",
}

# name -> "module:function" writing the canonical on-disk format (``mcit-bench convert``).
CONVERTERS: dict[str, str] = {
    "ucit": "mcit_bench.benchmarks.ucit:convert_ucit",
    "coin": "mcit_bench.benchmarks.coin:convert_coin",
}


def load_benchmark(name: str, **options: Any) -> Benchmark:
    """Load a benchmark by registered name (options: sizes (None = the benchmark's default: all records of a
    real benchmark), seed, data_root, image_root, strict_counts, ...)."""
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    module_name, func_name = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(module_name), func_name)(**options)
