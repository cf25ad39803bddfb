"""Strategy, second version: every hook's default, joint expressed through the hooks, and a replay method in
one file (examples/replay.py, the README's example) whose buffer reaches the training batches."""
from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mcit_bench.cli import main
from mcit_bench.engine.lightning_module import ContinualModule
from mcit_bench.registry import get_method
from mcit_bench.strategy import Strategy

from conftest import assert_learned, quick_args

ROOT = Path(__file__).resolve().parents[1]
HP = {"lr": 0.01, "weight_decay": 0.0, "steps_per_task": 7, "warmup_ratio": 0.0}


def _strategy(cls: type = Strategy, tasks: int = 3, **hparams) -> Strategy:
    strategy = cls(nn.Linear(2, 2), {**HP, **hparams})  # a module stands in for the backbone: no hook reads it
    names = [SimpleNamespace(name=f"t{i}") for i in range(tasks)]
    strategy.tasks, strategy.context = names, SimpleNamespace(seed=0, benchmark=None)
    return strategy


def test_defaults_train_every_stage_on_its_own_data_with_adamw() -> None:
    s = _strategy()
    data = object()
    assert [s.train_steps(t) for t in range(3)] == [7, 7, 7]
    assert s.train_data(1, s.tasks[1], data) is data
    assert all(s.evaluates_stage(stage) for stage in range(4))
    groups = s.param_groups(0.01, 0.0)
    optimizer = s.configure_optimizer(groups)
    assert type(optimizer) is torch.optim.AdamW and optimizer.param_groups[0]["lr"] == 0.01
    assert [t for t in range(3) if get_method("zero-shot").train_steps(_strategy(get_method("zero-shot")), t)] == []


def test_joint_is_the_hooks_not_a_runner_case() -> None:
    joint = get_method("joint")
    s = _strategy(joint)
    assert [s.train_steps(t) for t in range(3)] == [0, 0, 21]  # all steps at the last stage
    assert [s.evaluates_stage(stage) for stage in range(4)] == [True, False, False, True]


class _SGD(Strategy):
    def configure_optimizer(self, param_groups):
        return torch.optim.SGD(param_groups, momentum=0.5)


def test_the_strategys_optimiser_gets_the_harness_schedule() -> None:
    s = _strategy(_SGD)
    s.backbone.requires_grad_(True)
    configured = ContinualModule(s, HP, total_steps=4).configure_optimizers()
    assert type(configured["optimizer"]) is torch.optim.SGD
    assert configured["optimizer"].param_groups[0]["momentum"] == 0.5
    assert configured["lr_scheduler"]["interval"] == "step"  # LLaVA's warm-up + cosine, whatever the optimiser


def _load_example() -> type:
    spec = importlib.util.spec_from_file_location("replay_example", ROOT / "examples" / "replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Replay


def test_readme_example_is_the_replay_file() -> None:
    source = (ROOT / "examples" / "replay.py").read_text()
    readme = (ROOT / "README.md").read_text()
    assert len(source.splitlines()) < 60
    body = source[source.index("@register_method"):]
    assert body.strip() in readme  # the README shows the file as it is


def test_replay_buffer_reaches_the_training_batches(tmp_path: Path, tiny_backbone: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    replay = _load_example()
    seen: list[tuple[int, str]] = []
    original = replay.train_step

    def counting(self, batch):
        seen.extend((self.current_task, uid.split("/")[1]) for uid in batch["uids"])
        return original(self, batch)

    monkeypatch.setattr(replay, "train_step", counting)
    assert main(quick_args(tmp_path, "replay-example", "3", "--set", "replay_per_task=16")) == 0
    run = tmp_path / "run"
    order = json.loads((run / "summary.json").read_text())["tasks"]
    by_stage = {t: Counter(task for stage, task in seen if stage == t) for t in range(len(order))}
    assert set(by_stage[0]) == {order[0]}  # the first task has no buffer
    for t in range(1, len(order)):
        old = sum(n for task, n in by_stage[t].items() if task != order[t])
        assert set(by_stage[t]) <= set(order[:t + 1]) and old > 0, (t, by_stage[t])
    assert sum(by_stage[t][order[t]] for t in range(len(order))) > 0
    assert_learned(run)
    # the same run with the example's own optimiser (SGD) trains other weights
    assert main(quick_args(tmp_path / "sgd", "replay-example", "3", "--set", "optimizer=sgd")) == 0
    assert (tmp_path / "sgd" / "run" / "accuracy.csv").read_text() != (run / "accuracy.csv").read_text()
