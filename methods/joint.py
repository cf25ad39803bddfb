"""joint: one model trained on all tasks at once (the multitask upper bound; one trained row).

Same adapter and projector as lora-ft, same total number of steps (steps_per_task x T) on the
shuffled union of the tasks. Only rows 0 (zero-shot) and T (after joint training) are evaluated;
metrics that need the rows in between are reported as unavailable.
"""
from __future__ import annotations

from mcit_bench.registry import register_method

from .lora_ft import LoRAFineTune


@register_method("joint", "multitask")
class Joint(LoRAFineTune):
    joint = True
