"""The Strategy interface: one continual-instruction-tuning method = one subclass in one file.

Lifecycle, driven by the runner (``mcit_bench.engine.runner``) for a task order of T tasks::

    setup(tasks, context)                 # once; sees the whole sequence (e.g. Fwd-Prompt's U_pre)
    for t, task in enumerate(tasks):
        train_steps(t) -> steps           # 0: this stage does not train (zero-shot; joint before the last)
        train_data(t, task, data) -> data # what the task trains on: its split, + a buffer (replay), ...
        before_task(t, task, train_data)  # grow prompts / projectors, reset optimiser state, ...
        configure_optimizer(param_groups) # the optimiser (AdamW by default); the harness adds the schedule
        fit: train_step(batch) -> {name: loss}   (ALL losses are summed and back-propagated,
             before_optimizer_step()               each is logged apart; the hook runs between
                                                   backward and the optimiser step)
             after_optimizer_step()               (right after the optimiser step)
        after_task(t, task, train_data)   # collect statistics (subspaces, Gram matrices, prototypes)
        merge(t)                          # training-free merging (MAny's CPM/LPM)
        evaluate every task with generate(batch)  -> prepare_inputs(batch, training=False) is the
                                                     inference hook for routing / prompt selection
                                                     (stages where evaluates_stage(stage) is True)
    (stage 0, before the first task, is the untouched backbone: ``generate_untouched``)

State for resume: ``checkpoint()`` / ``restore(checkpoint)`` at task boundaries.

Several processes (``--devices N``): every rank runs every hook in step. Training batches and test
batches are split between the ranks by the harness (gradients are averaged by DDP, the LM loss is
normalised by the global token count). A plugin that ACCUMULATES OVER DATA outside training (statistics
in ``setup`` / ``before_task`` / ``after_task``, counts during evaluation) must combine the ranks itself:

    mine = self.shard(sample)            # this rank's share of the records (all of them on one process)
    G = self.all_reduce(G_partial)       # sum over ranks (a tensor; identity on one process)
    parts = self.all_gather(obj)         # every rank's object, in rank order ([obj] on one process)

and reduce evaluation counts in ``on_evaluate_end`` (called on every rank after each cell). The state
after ``merge`` must be identical on every rank: the runner checks it and stops otherwise. Only rank 0
receives ``context.run_dir`` (the other ranks get None and must not write).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import torch
from torch import nn

if TYPE_CHECKING:
    from .backbones.llava import Backbone
    from .benchmark import Benchmark, TaskSpec


def fused_adamw(groups: list[dict[str, Any]], wanted: bool) -> bool:
    """Whether to ask for AdamW's fused kernel (``fused_optimizer``): only where every parameter's device has
    one (CPU and CUDA). One kernel for all tensors instead of a Python loop over them (2 ms instead of 5 ms a
    step on the built-in default, tools/bench_speed.py); its rounding differs from the loop's in the last bits."""
    devices = {p.device.type for group in groups for p in group["params"]}
    return wanted and bool(devices) and devices <= {"cpu", "cuda"}


@dataclass
class ModelInputs:
    """What the language model reads: embeddings, attention mask and (training) labels."""

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """What ``setup`` may look at: the benchmark, the order, the seed and the run folder."""

    benchmark: "Benchmark"
    tasks: list["TaskSpec"]
    seed: int
    run_dir: Any = None
    collate_train: Any = None
    collate_eval: Any = None


class Strategy(nn.Module):
    """Base class. Subclasses override the hooks they need; the defaults give plain fine-tuning of
    whatever parameters are trainable (none: the zero-shot baseline).

    Class attributes:
      ``name``: registry name (set by ``@register_method``);
      ``defaults``: default hyper-parameters (merged over the YAML file beside the module, if any);
      ``joint``: the multitask reference (reporting: the tuning objective is ``last``; its training and
      evaluation go through ``train_steps`` / ``train_data`` / ``evaluates_stage``, methods/joint.py);
      ``trains``: False for methods that never train (zero-shot; the default ``train_steps`` is then 0).
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    joint: ClassVar[bool] = False
    trains: ClassVar[bool] = True

    def __init__(self, backbone: "Backbone", hparams: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = backbone
        self.hparams = dict(hparams)
        self.tasks: list["TaskSpec"] = []
        self.context: RunContext | None = None
        self.current_task = -1

    @classmethod
    def check_hparams(cls, hparams: dict[str, Any]) -> None:
        """Validate the resolved hyper-parameters before anything is loaded or written (raise UserError)."""

    # ------------------------------------------------------------------ lifecycle hooks
    def setup(self, tasks: list["TaskSpec"], context: RunContext) -> None:
        """Called once before the first task with the whole task sequence."""
        self.tasks, self.context = list(tasks), context

    # ------------------------------------------------------------------ what a stage trains on
    def train_steps(self, task_index: int) -> int:
        """Optimiser steps for task ``task_index`` (``steps_per_task``); 0: the stage does not train
        (``before_task`` still runs, with ``train_data=None``). Also what the run's ETA counts."""
        return int(self.hparams["steps_per_task"]) if self.trains else 0

    def train_data(self, task_index: int, task: "TaskSpec", data: Any) -> Any:
        """The records task ``task_index`` trains on (a ``datasets.Dataset``): its own training split by
        default; extend it (replay: earlier tasks' samples) or replace it (joint: every task). The runner
        shuffles it with the stage's seed and splits its batches between the ranks."""
        return data

    def evaluates_stage(self, stage: int) -> bool:
        """Whether the model after ``stage`` (0 = the untouched backbone) is evaluated (default: every stage)."""
        return True

    def before_task(self, task_index: int, task: "TaskSpec", train_data: Any) -> None:
        self.current_task = task_index

    def after_task(self, task_index: int, task: "TaskSpec", train_data: Any) -> None:
        """Called after training on a task (collect statistics here, without gradients)."""

    def merge(self, task_index: int) -> None:
        """Training-free merging after ``after_task`` (default: nothing)."""

    # ------------------------------------------------------------------ training
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates for the current task (default: all with requires_grad)."""
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups; override to give parts their own learning rate."""
        return [{"params": self.trainable_parameters(), "lr": lr, "weight_decay": weight_decay}]

    def configure_optimizer(self, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        """The optimiser over ``param_groups`` (AdamW by default; ``fused_optimizer`` picks its fused kernel
        where the device has one). The harness adds LLaVA's schedule (warm-up, cosine) to whatever comes back."""
        return torch.optim.AdamW(param_groups, fused=fused_adamw(param_groups, bool(self.hparams.get("fused_optimizer",
                                                                                                    False))))

    def prepare_inputs(self, batch: dict[str, Any], training: bool) -> ModelInputs:
        """Image features -> projector -> embeddings (override to route, select or insert prompts).

        ``extras["position_ids"]``: the backbone family's position ids for this exact sequence (Qwen2-VL's
        M-RoPE; None for LLaVA/InstructBLIP). Drop them when you change the sequence (soft prompts).
        """
        visual = self.backbone.visual_tokens(batch)
        embeds = self.backbone.embed(batch["input_ids"], visual)
        return ModelInputs(embeds, batch["attention_mask"], batch.get("labels"),
                           extras={"position_ids": self.backbone.position_ids(batch)})

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Named losses for one batch; the harness sums all of them before backward."""
        inputs = self.prepare_inputs(batch, training=True)
        return {"lm": self.backbone.lm_loss(inputs.inputs_embeds, inputs.attention_mask, inputs.labels,
                                            position_ids=inputs.extras.get("position_ids"))}

    def before_optimizer_step(self) -> None:
        """Between backward and the optimiser step (gradient projection goes here)."""

    def after_optimizer_step(self) -> None:
        """Right after the optimiser step (e.g. to confine the actual update of an adaptive optimiser)."""

    # ------------------------------------------------------------------ inference
    def on_evaluate(self, stage: int, task_index: int) -> None:
        """Called before the runner evaluates column ``task_index`` at ``stage`` (0 = zero-shot).

        Inference must stay task-agnostic: use this only for bookkeeping, e.g. to measure how often
        a routing/selection step picks the sample's own task.
        """

    @torch.no_grad()
    def generate(self, batch: dict[str, Any], max_new_tokens: int) -> list[str]:
        return self._decode(self.prepare_inputs(batch, training=False), max_new_tokens)

    @torch.no_grad()
    def generate_untouched(self, batch: dict[str, Any], max_new_tokens: int) -> list[str]:
        """The untouched backbone's answers: what the runner evaluates at stage 0 (the zero-shot row).

        The base class's inputs, whatever a method inserts or routes: an untrained prompt pool (Fwd-Prompt)
        would otherwise stand between the backbone and the zero-shot row, and a method's forward transfer
        would be measured against its own random initialisation. LoRA injected in ``setup`` starts at zero
        (peft's default), so it changes nothing here.
        """
        return self._decode(Strategy.prepare_inputs(self, batch, training=False), max_new_tokens)

    def _decode(self, inputs: ModelInputs, max_new_tokens: int) -> list[str]:
        return self.backbone.generate(inputs.inputs_embeds, inputs.attention_mask, max_new_tokens,
                                      position_ids=inputs.extras.get("position_ids"))

    def on_evaluate_end(self, stage: int, task_index: int) -> None:
        """Called on every rank once the cell's predictions are gathered: reduce evaluation counts here."""

    # ------------------------------------------------------------------ several processes
    @staticmethod
    def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over the ranks (same device and dtype); the tensor itself on one process."""
        from . import distributed

        return distributed.all_reduce(tensor)

    @classmethod
    def all_reduce_counts(cls, counts: Sequence[int | float]) -> list[int]:
        """Integer counts summed over the ranks (the counts themselves on one process)."""
        return [int(v) for v in cls.all_reduce(torch.tensor([float(c) for c in counts], dtype=torch.float64))]

    @staticmethod
    def all_gather(obj: Any) -> list[Any]:
        """Every rank's picklable ``obj`` in rank order; ``[obj]`` on one process."""
        from . import distributed

        return distributed.all_gather(obj)

    @staticmethod
    def shard(items: Any) -> list[Any]:
        """This rank's contiguous share of ``items`` (everything on one process)."""
        from . import distributed

        return distributed.shard(items)

    # ------------------------------------------------------------------ reporting
    def trainable_parameter_count(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def report(self) -> dict[str, Any]:
        """Extra method-specific figures for summary.json (e.g. selection accuracy)."""
        return {}

    # ------------------------------------------------------------------ state for resume
    def checkpoint_keys(self) -> list[str]:
        """State-dict keys that change during a run (default: trainable and LoRA tensors and all
        tensors owned by the strategy outside the frozen backbone)."""
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        return [k for k in self.state_dict() if k in trainable or "lora_" in k or not k.startswith("backbone.")]

    def extra_state(self) -> dict[str, Any]:
        """Non-tensor state (counters, structure sizes) needed to rebuild before loading tensors."""
        return {"current_task": self.current_task}

    def rebuild(self, extra: dict[str, Any]) -> None:
        """Re-create structures that grow during a run (e.g. per-task prompts) from ``extra_state``."""
        self.current_task = extra.get("current_task", -1)

    def checkpoint(self) -> dict[str, Any]:
        state = self.state_dict()
        return {"tensors": {k: state[k].detach().cpu().clone() for k in self.checkpoint_keys()},
                "extra": self.extra_state(), "name": self.name}

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.rebuild(checkpoint["extra"])
        missing_in_model = set(checkpoint["tensors"]) - set(self.state_dict())
        if missing_in_model:
            raise RuntimeError(f"checkpoint holds tensors the strategy does not have: {sorted(missing_in_model)[:5]}")
        self.load_state_dict(checkpoint["tensors"], strict=False)
