"""Experience replay in one file: LoRA fine-tuning on each task's data plus a few samples of every
earlier task (the README's "Adding a method" example; tests/test_strategy_hooks.py runs it).

The buffer is drawn from the earlier tasks' training splits with the run's seed, so it is the same after a
resume and on every rank, and needs no checkpoint. Use it from the CLI by copying it into ``methods/`` or
registering it through the ``mcit_bench.methods`` entry point of your own package.
"""
from __future__ import annotations

from typing import Any

import datasets
import torch

from mcit_bench.registry import register_method
from mcit_bench.methods.lora_ft import LoRAFineTune


@register_method("replay-example")
class Replay(LoRAFineTune):
    defaults = {**LoRAFineTune.defaults, "replay_per_task": 16, "optimizer": "adamw"}  # --set optimizer=sgd

    def train_data(self, task_index: int, task: Any, data: Any) -> Any:  # + a buffer of each earlier task
        buffer = []
        for earlier in self.tasks[:task_index]:
            old = self.context.benchmark.train_split(earlier.name).shuffle(seed=self.context.seed)
            buffer.append(old.select(range(min(int(self.hparams["replay_per_task"]), len(old)))))
        return datasets.concatenate_datasets([data, *buffer])  # the runner shuffles and batches it

    def configure_optimizer(self, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        if self.hparams["optimizer"] == "sgd":  # the harness adds its warm-up + cosine schedule to it
            return torch.optim.SGD(param_groups, momentum=0.9)
        return super().configure_optimizer(param_groups)
