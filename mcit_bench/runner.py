"""The task-sequence loop: train a strategy task by task and fill the accuracy matrix.

Stage 0 evaluates the untouched backbone on every task (zero-shot row), through
``Strategy.generate_untouched`` whatever the method inserts once it learns. Stage t trains the t-th task
of the order with one ``Trainer.fit`` and then evaluates EVERY task, future ones included
(``eval_mode="lower"`` skips the upper triangle; those cells stay empty, never 0).

Nothing is lost: after every evaluated cell the run state is written atomically; a strategy
checkpoint is written at every task boundary; ``resume=True`` restarts from the last completed task,
skips the cells already evaluated and yields the same matrix as an uninterrupted run (training of
stage t is seeded by (seed, t) alone, so it does not depend on what ran before in the process).

On several processes (``mcit_bench.distributed``) every rank runs this whole loop in step: each optimisation
step takes the same global batch as one process would, split between the ranks; each cell's test batches
are shared out and gathered back in sample order; rank 0 alone writes the run folder.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from .benchmark import Benchmark, load_benchmark
from .config import RunConfig, load_order, resolve_hparams
from .errors import UserError
from .registry import get_method, method_defaults

STATE_FILE = "state.json"


@dataclass
class Plan:
    """Everything validated before any expensive work: a run that starts cannot fail on bad input."""

    config: RunConfig
    method_cls: type
    hparams: dict[str, Any]
    benchmark: Benchmark
    order: list[str]
    backbone_spec: str
    run_dir: Path


def default_run_dir(root: Path, benchmark: str, method: str, order: str, seed: int) -> Path:
    """``<root>/<benchmark>/<method>/order<K>-seed<S>`` (``order-<stem>`` for an order YAML file)."""
    order_tag = f"order{order}" if str(order).isdigit() else f"order-{Path(str(order)).stem}"
    return Path(root) / benchmark / method / f"{order_tag}-seed{seed}"


def plan_run(cfg: RunConfig, check_existing: bool = True) -> Plan:
    """Validate the configuration (method, hyper-parameters, benchmark, order, backbone, run folder).

    ``check_existing=False``: skip the run-folder checks (a worker rank of a run that rank 0 planned)."""
    from .backbones import check_backbone

    method_cls = get_method(cfg.method)
    hparams = resolve_hparams(method_defaults(method_cls), cfg.preset, cfg.overrides, method_cls.name)
    method_cls.check_hparams(hparams)
    if cfg.eval_mode not in ("full", "lower"):
        raise UserError(f"--eval {cfg.eval_mode!r}: expected 'full' or 'lower'")
    benchmark = load_benchmark(cfg.benchmark, train_size=hparams["train_size"], test_size=hparams["test_size"],
                               data_root=cfg.data_root, image_root=cfg.image_root,
                               strict_counts=bool(hparams.get("strict_counts", True)))
    order = load_order(cfg.order, benchmark.task_names, benchmark=benchmark.name)
    check_backbone(cfg.backbone)
    if hparams.get("template") is not None:
        from .templates import get_template

        get_template(str(hparams["template"]))
    run_dir = Path(cfg.output) if cfg.output else \
        default_run_dir(Path("results") / "runs", benchmark.name, method_cls.name, cfg.order, cfg.seed)
    cfg.hparams = hparams
    state_path = run_dir / STATE_FILE
    if check_existing and state_path.exists():
        if not cfg.resume:
            raise UserError(f"{run_dir}: a run already exists there; pass --resume to continue it or --output "
                            f"to write elsewhere")
        previous = yaml.safe_load((run_dir / "config.yaml").read_text())
        for key in ("method", "benchmark", "backbone", "seed", "preset", "eval_mode"):
            now = method_cls.name if key == "method" else getattr(cfg, key)  # config.yaml holds the canonical name
            if str(previous.get(key)) != str(now):
                raise UserError(f"{run_dir}/config.yaml: --resume with {key}={getattr(cfg, key)!r} but the run "
                                f"was started with {key}={previous.get(key)!r}")
        if previous.get("hparams") != hparams or previous.get("tasks") != order:
            raise UserError(f"{run_dir}/config.yaml: --resume with different hyper-parameters or task order "
                            f"than the run was started with")
    return Plan(cfg, method_cls, hparams, benchmark, order, cfg.backbone, run_dir)


class RunState:
    """``state.json``: evaluated cells, trained stages and timings (rewritten atomically)."""

    def __init__(self, path: Path, writer: bool = True) -> None:
        self.path, self.writer = path, writer
        self.data: dict[str, Any] = json.loads(path.read_text()) if writer and path.exists() else \
            {"cells": {}, "trained": [], "seconds": {"train": {}, "eval": {}}, "complete": False}

    def cell(self, stage: int, task: str) -> dict[str, Any] | None:
        return self.data["cells"].get(str(stage), {}).get(task)

    def set_cell(self, stage: int, task: str, value: dict[str, Any]) -> None:
        self.data["cells"].setdefault(str(stage), {})[task] = value
        self.data["seconds"]["eval"][f"{stage}/{task}"] = value["seconds"]
        self.save()

    def save(self) -> None:
        if self.writer:  # rank 0 alone writes the run folder
            atomic_write_json(self.path, self.data)


def stages_to_evaluate(stage: int, n_tasks: int, eval_mode: str, joint: bool) -> list[int]:
    """Column indices evaluated at ``stage`` (0-based columns)."""
    if joint and 0 < stage < n_tasks:
        return []  # the joint model exists only after all tasks
    if stage == 0 or eval_mode == "full":
        return list(range(n_tasks))
    return list(range(stage))


def execute(plan: Plan, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the plan; returns the summary."""
    import torch

    from . import distributed
    from .backbones import load_backbone
    from .collate import Collator
    from .seeding import seed_everything
    from .strategy import RunContext

    cfg, run_dir, order = plan.config, plan.run_dir, plan.order
    writer = distributed.rank() == 0
    progress = progress and writer
    started = time.time()
    resolved = {**{k: v for k, v in cfg.to_dict().items() if k not in ("resume",)}, "tasks": order,
                "method": plan.method_cls.name}
    if writer:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / STATE_FILE).exists():  # a fresh run (or one that failed before its first cell): its config
            atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    state = RunState(run_dir / STATE_FILE, writer=writer)
    state.data = distributed.broadcast(state.data)  # rank 0's view of what is done (--resume) for every rank
    torch.set_num_threads(max(1, torch.get_num_threads()))
    seed_everything(cfg.seed)
    backbone = load_backbone(cfg.backbone, progress=progress, template=plan.hparams.get("template"),
                             preferred_template=plan.benchmark.template)
    strategy = plan.method_cls(backbone, plan.hparams)
    tasks = [plan.benchmark.task(name) for name in order]
    collate_train = Collator(backbone.processor, backbone.template, train=True, image_token=backbone.image_token,
                             cache_mb=float(plan.hparams["collate_cache_mb"]))
    collate_eval = Collator(backbone.processor, backbone.template, train=False, image_token=backbone.image_token)
    # plugins write into the run folder too (analysis files): only rank 0 is given it
    context = RunContext(plan.benchmark, tasks, cfg.seed, run_dir if writer else None, collate_train, collate_eval)
    seed_everything(cfg.seed)
    strategy.setup(tasks, context)
    device = torch.device("cuda" if cfg.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available() else "cpu")
    strategy.to(device)

    trained = sorted(state.data["trained"])
    last_trained = trained[-1] if trained else 0
    if last_trained:
        strategy.restore(torch.load(run_dir / "checkpoints" / f"stage{last_trained}.pt", weights_only=False))

    n = len(tasks)
    test_sets = {t.name: plan.benchmark.test_split(t.name) for t in tasks}
    for stage in range(0, n + 1):
        if stage > last_trained and stage > 0:
            if strategy.trains and (not strategy.joint or stage == n):
                _train_stage(plan, strategy, tasks, stage, collate_train, state, progress)
            else:
                strategy.before_task(stage - 1, tasks[stage - 1], None)
            if writer:
                _save_checkpoint(run_dir, stage, strategy)
            state.data["trained"] = sorted(set(state.data["trained"]) | {stage})
            state.save()
        for col in stages_to_evaluate(stage, n, cfg.eval_mode, strategy.joint):
            task = tasks[col]
            if state.cell(stage, task.name) is not None:
                continue
            from .evaluation import evaluate_cell

            strategy.on_evaluate(stage, col)
            result = evaluate_cell(strategy, test_sets[task.name], task, collate_eval,
                                   int(plan.hparams["eval_batch_size"]), plan.hparams["eval_max_new_tokens"], device,
                                   untouched=(stage == 0),
                                   chance_shifts=int(plan.hparams["chance_shifts"]) if stage == 0 else 0)
            strategy.on_evaluate_end(stage, col)
            if result is None:  # not rank 0: the cell is scored and written there
                continue
            lines = "".join(json.dumps(p) + "\n" for p in result.predictions)
            atomic_write_bytes(run_dir / "predictions" / f"stage{stage}" / f"{task.name}.jsonl", lines.encode())
            state.set_cell(stage, task.name, {"score": result.score, "details": result.details,
                                              "seconds": round(result.seconds, 3)})
            if progress:
                print(f"  stage {stage} | {task.name:<18} {result.score:6.2f}", flush=True)
        summary = write_results(plan, state, strategy, started, complete=(stage == n)) if writer else {}
        if os.environ.get("MCIT_BENCH_STOP_AFTER_STAGE") == str(stage):
            # Simulated preemption for tests and drills: stop hard once this stage is on disk.
            raise SystemExit(f"mcit-bench: stopped after stage {stage} (MCIT_BENCH_STOP_AFTER_STAGE)")
    state.data["complete"] = True
    state.save()
    return summary


def _train_stage(plan: Plan, strategy: Any, tasks: list, stage: int, collate: Any, state: RunState,
                 progress: bool) -> None:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from . import distributed
    from .lightning_module import ContinualModule
    from .loggers import make_logger
    from .seeding import seed_everything

    cfg, hp = plan.config, plan.hparams
    seed = cfg.seed * 1000 + stage  # training of a stage depends on (seed, stage) only: resume-safe
    seed_everything(seed)
    start = time.time()
    if strategy.joint:
        import datasets

        data = datasets.concatenate_datasets([plan.benchmark.train_split(t.name) for t in tasks])
        steps = int(hp["steps_per_task"]) * len(tasks)
    else:
        data = plan.benchmark.train_split(tasks[stage - 1].name)
        steps = int(hp["steps_per_task"])
    collate.clear_cache()
    strategy.before_task(stage - 1, tasks[stage - 1], data)
    strategy.train()
    batch_size = int(hp["batch_size"])
    # The batches one process would draw, each split between the ranks (see ShardedBatchSampler).
    # One generator for the sampler and the loader, as DataLoader(shuffle=True, generator=g) shares it.
    generator = torch.Generator().manual_seed(seed)
    sampler = ShardedBatchSampler(torch.utils.data.RandomSampler(data, generator=generator), batch_size,
                                  drop_last=len(data) >= batch_size)
    loader = DataLoader(_undecoded(data), batch_sampler=sampler, collate_fn=collate, generator=generator, num_workers=0)
    module = ContinualModule(strategy, hp, total_steps=steps)
    writer = distributed.rank() == 0
    trainer = L.Trainer(
        max_steps=steps, max_epochs=-1, accelerator=cfg.accelerator, devices=cfg.devices,
        strategy=_lightning_strategy(cfg, module), num_nodes=int(cfg.num_nodes), precision=cfg.precision,
        logger=make_logger(cfg.logger, plan.run_dir, stage) if writer else False, enable_checkpointing=False,
        enable_progress_bar=progress and writer, enable_model_summary=False, num_sanity_val_steps=0,
        gradient_clip_val=float(hp["grad_clip"]) or None, default_root_dir=str(plan.run_dir),
        log_every_n_steps=max(1, min(50, steps // 4)), use_distributed_sampler=False,
    )
    trainer.fit(module, loader)
    strategy.eval()
    strategy.after_task(stage - 1, tasks[stage - 1], data)
    strategy.merge(stage - 1)
    if distributed.active():  # statistics reduced across ranks leave every rank with the same state
        distributed.check_same_state(strategy.checkpoint()["tensors"], f"the merge of stage {stage}")
    state.data["seconds"]["train"][str(stage)] = round(time.time() - start, 3)


class ShardedBatchSampler:
    """The batches of ``BatchSampler(sampler, batch_size, drop_last)``, each cut into contiguous shares,
    one per rank: N ranks together take exactly the global batch one process would (same seed, same
    order), so a step on N ranks is the single-process step (the loss is normalised by the global token
    count, ``ContinualModule``)."""

    def __init__(self, sampler: Any, batch_size: int, drop_last: bool) -> None:
        from torch.utils.data import BatchSampler

        self.batches = BatchSampler(sampler, batch_size, drop_last)

    def __iter__(self):
        from . import distributed

        for batch in self.batches:
            yield distributed.shard(batch)

    def __len__(self) -> int:
        return len(self.batches)


def _lightning_strategy(cfg: RunConfig, module: Any) -> Any:
    """``--strategy ddp`` on several processes: Lightning's DDP, told to leave the frozen backbone and every
    buffer (MAny's merge state, Fwd-Prompt's bases) alone: they are equal on every rank by construction, and
    DDP would otherwise broadcast them at every fit (and every step)."""
    from . import distributed

    if not distributed.active() or cfg.strategy not in ("ddp", "ddp_find_unused_parameters_true", "auto"):
        return cfg.strategy
    from lightning.pytorch.strategies import DDPStrategy

    module._ddp_params_and_buffers_to_ignore = \
        [n for n, p in module.named_parameters() if not p.requires_grad] + [n for n, _ in module.named_buffers()]
    return DDPStrategy(find_unused_parameters=cfg.strategy.endswith("true"))


def _undecoded(data: Any) -> Any:
    """The training split with its images left as bytes: the collator decodes only what it has not cached."""
    import datasets

    feature = data.features.get("image") if hasattr(data, "features") else None
    return data.cast_column("image", datasets.Image(decode=False)) if isinstance(feature, datasets.Image) else data


def _save_checkpoint(run_dir: Path, stage: int, strategy: Any) -> None:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(strategy.checkpoint(), buffer)
    atomic_write_bytes(run_dir / "checkpoints" / f"stage{stage}.pt", buffer.getvalue())


def matrix_from_state(state: RunState, order: list[str]) -> np.ndarray:
    R = np.full((len(order) + 1, len(order)), np.nan)
    for stage, cells in state.data["cells"].items():
        for task, cell in cells.items():
            R[int(stage), order.index(task)] = cell["score"]
    return R


def backbone_checkpoint(spec: str, strategy: Any) -> str:
    """The checkpoint folder's name for a built-in backbone (``tiny-llava-r2-<recipe hash>``), else its path."""
    from .backbones import BUILTIN_BACKBONES

    source = strategy.backbone.source or spec
    return Path(source).name if spec in BUILTIN_BACKBONES else source


def write_results(plan: Plan, state: RunState, strategy: Any, started: float, complete: bool) -> dict[str, Any]:
    from . import metrics
    from .environment import fingerprint
    from .evaluation import zero_shot_report
    from .matrix_io import write_matrix_csv

    order, run_dir = plan.order, plan.run_dir
    R = matrix_from_state(state, order)
    write_matrix_csv(run_dir / "accuracy.csv", R, order)
    write_matrix_csv(run_dir / "fgt.csv", metrics.fgt_matrix(R), order, differences=True)
    write_matrix_csv(run_dir / "fwd.csv", metrics.fwd_matrix(R), order, differences=True)
    summary = metrics.summarize(R)
    tasks = [plan.benchmark.task(name) for name in order]
    seconds = state.data["seconds"]
    summary.update({
        "method": plan.method_cls.name,
        "benchmark": plan.benchmark.name,
        "backbone": plan.config.backbone,
        # What was loaded: a built-in name maps to a cache folder named by its recipe hash, so a rebuilt
        # recipe never averages with runs of the old one (leaderboard settings compare this too).
        "backbone_checkpoint": backbone_checkpoint(plan.config.backbone, strategy),
        "order": plan.config.order,
        "seed": plan.config.seed,
        "preset": plan.config.preset,
        "tasks": order,
        "complete": complete,
        "scorers": {t.name: {"scorer": t.scorer, "variant": t.scorer_variant, "chance": t.chance} for t in tasks},
        "zero_shot": zero_shot_report(state.data["cells"].get("0", {}), tasks),
        "trainable_parameters": strategy.trainable_parameter_count(),
        "strategy": strategy.report(),
        "timings": {"train_seconds": seconds["train"], "eval_seconds_total": round(sum(seconds["eval"].values()), 3),
                    "train_seconds_total": round(sum(seconds["train"].values()), 3),
                    "wall_seconds_this_process": round(time.time() - started, 3)},
        "environment": fingerprint(strategy),
    })
    atomic_write_json(run_dir / "summary.json", summary)
    return summary
