"""joint: one model trained on all tasks at once (the multitask upper bound; one trained row).

Same adapter and projector as lora-ft, same total number of steps (steps_per_task x T) on the
shuffled union of the tasks, all at the last stage. Only rows 0 (zero-shot) and T (after joint
training) are evaluated; metrics that need the rows in between are reported as unavailable.
Expressed through the Strategy's data hooks, no special case in the runner.
"""
from __future__ import annotations

from typing import Any

import datasets

from mcit_bench.registry import register_method

from .lora_ft import LoRAFineTune


@register_method("joint", "multitask")
class Joint(LoRAFineTune):
    joint = True

    def _last(self, task_index: int) -> bool:
        return task_index == len(self.tasks) - 1

    def train_steps(self, task_index: int) -> int:
        return int(self.hparams["steps_per_task"]) * len(self.tasks) if self._last(task_index) else 0

    def train_data(self, task_index: int, task: Any, data: Any) -> Any:
        benchmark = self.context.benchmark
        return datasets.concatenate_datasets([benchmark.train_split(t.name) for t in self.tasks])

    def evaluates_stage(self, stage: int) -> bool:
        return stage in (0, len(self.tasks))
