"""The task-sequence loop: train a strategy task by task and fill the accuracy matrix.

Stage 0 evaluates the untouched backbone on every task (zero-shot row), through
``Strategy.generate_untouched`` whatever the method inserts once it learns. Stage t trains the t-th task
of the order with one ``Trainer.fit`` and then evaluates EVERY task, future ones included
(``eval_mode="lower"`` skips the upper triangle; those cells stay empty, never 0).

Nothing is lost: after every evaluated cell the run state is written atomically (with a checksum); a
strategy checkpoint (``checkpoints.py``: safetensors + JSON) is written at every task boundary; a
non-finite loss stops the run (``divergence.py``); ``resume=True`` restarts from the last completed task,
skips the cells already evaluated and yields the same matrix as an uninterrupted run (training of
stage t is seeded by (seed, t) alone, so it does not depend on what ran before in the process).

On several processes (``mcit_bench.distributed``) every rank runs this whole loop in step: each optimisation
step takes the same global batch as one process would, split between the ranks; each cell's test batches
are shared out and gathered back in sample order; rank 0 alone writes the run folder.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from ..rundir.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..benchmark import Benchmark, load_benchmark, with_scorer_variants
from ..config import PRESETS, STREAMS, TRAIN_DEFAULTS, RunConfig, load_order, resolve_hparams
from ..errors import UserError
from ..registry import get_method, method_defaults

STATE_FILE = "state.json"


@dataclass(frozen=True)
class Plan:
    """Everything validated before any expensive work: a run that starts cannot fail on bad input.

    Frozen: the hyper-parameters are resolved once, here (``config.hparams`` is ``hparams``); the runner, the
    sweep and tuning read them from the plan and never resolve again."""

    config: RunConfig  # a copy of the caller's configuration, with ``hparams`` filled in
    method_cls: type
    hparams: dict[str, Any]
    benchmark: Benchmark
    order: list[str]
    backbone_spec: str
    run_dir: Path
    preset_values: dict[str, Any] | None = None  # what the preset set (the tuned values for --preset tuned)
    tuned: dict[str, Any] | None = None  # --preset tuned: {"file", "values", "provenance"}
    resume: Any = None  # resume.ResumeInfo of an existing run folder (None: a new run)


@dataclass(frozen=True)
class ResolvedHparams:
    """A configuration's hyper-parameters: defaults < preset (or the tuned values) < ``--set``, checked."""

    method_cls: type
    values: dict[str, Any]
    preset_values: dict[str, Any]  # what the preset set (for ``tuned``: the tuned values)
    tuned: dict[str, Any] | None  # --preset tuned: {"file", "values", "provenance"}


def resolve_run_hparams(cfg: RunConfig) -> ResolvedHparams:
    """The one place a run's hyper-parameters are resolved (``plan_run``, and ``plan_tune`` for its budget)."""
    method_cls = get_method(cfg.method)
    defaults = method_defaults(method_cls)
    tuned = _tuned_preset(cfg, method_cls, defaults) if cfg.preset == "tuned" else None
    preset_values = tuned["values"] if tuned is not None else None
    hparams = resolve_hparams(defaults, cfg.preset, cfg.overrides, method_cls.name, preset_values)
    method_cls.check_hparams(hparams)
    return ResolvedHparams(method_cls, hparams, dict(PRESETS[cfg.preset] if preset_values is None else preset_values),
                           tuned)


def default_run_dir(root: Path, benchmark: str, method: str, order: str, seed: int) -> Path:
    """``<root>/<benchmark>/<method>/order<K>-seed<S>`` (``order-<stem>`` for an order YAML file)."""
    order_tag = f"order{order}" if str(order).isdigit() else f"order-{Path(str(order)).stem}"
    return Path(root) / benchmark / method / f"{order_tag}-seed{seed}"


def plan_run(cfg: RunConfig, check_existing: bool = True) -> Plan:
    """Validate the configuration (method, hyper-parameters, benchmark, order, backbone, run folder).

    ``check_existing=False``: skip the run-folder checks (a worker rank of a run that rank 0 planned)."""
    from ..backbones import check_backbone

    resolved = resolve_run_hparams(cfg)
    method_cls, hparams = resolved.method_cls, resolved.values
    if cfg.eval_mode not in ("full", "lower"):
        raise UserError(f"--eval {cfg.eval_mode!r}: expected 'full' or 'lower'")
    if cfg.data_stream not in STREAMS:
        raise UserError(f"data stream {cfg.data_stream!r}: expected one of {', '.join(STREAMS)}")
    benchmark = load_benchmark(cfg.benchmark, train_size=hparams["train_size"], test_size=hparams["test_size"],
                               data_root=cfg.data_root, image_root=cfg.image_root,
                               strict_counts=bool(hparams.get("strict_counts", True)), stream=cfg.data_stream)
    benchmark = with_scorer_variants(benchmark, cfg.scorer_variants)
    order = load_order(cfg.order, benchmark.task_names, benchmark=benchmark.name)
    if cfg.task_subset:
        unknown = [t for t in cfg.task_subset if t not in benchmark.task_names]
        if unknown:
            raise UserError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(benchmark.task_names)}")
        order = list(cfg.task_subset)
    check_backbone(cfg.backbone)
    if hparams.get("template") is not None:
        from ..templates import get_template

        get_template(str(hparams["template"]))
    run_dir = Path(cfg.output) if cfg.output else \
        default_run_dir(Path("results") / "runs", benchmark.name, method_cls.name, cfg.order, cfg.seed)
    cfg = replace(cfg, hparams=hparams)  # the caller's configuration is left as it was given
    state_path = run_dir / STATE_FILE
    if check_existing and state_path.exists():
        if not cfg.resume:
            raise UserError(f"{run_dir}: a run already exists there; pass --resume to continue it or --output "
                            f"to write elsewhere")
        previous = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        before = previous.get("data_stream", "report")  # runs older than streams were on the report stream
        if str(before) != str(cfg.data_stream):
            raise UserError(f"{run_dir}/config.yaml: --resume with data_stream={cfg.data_stream!r} but the run was "
                            f"started with data_stream={before!r}")
        from ..rundir.resume import SAME_RUN, check_resume

        now = {key: method_cls.name if key == "method" else getattr(cfg, key) for key in SAME_RUN}
        resume = check_resume(run_dir, now, hparams, order)
    else:
        if check_existing:
            _refuse_stateless_results(run_dir, cfg.resume)
        resume = None
    return Plan(cfg, method_cls, hparams, benchmark, order, cfg.backbone, run_dir,
                preset_values=resolved.preset_values, tuned=resolved.tuned, resume=resume)


RESULT_FILES = ("checkpoints", "predictions", "accuracy.csv", "summary.json")


def _refuse_stateless_results(run_dir: Path, resume: bool) -> None:
    """A folder with results but no state.json is never started over: that would overwrite them unasked."""
    found = [name for name in RESULT_FILES if (run_dir / name).exists()]
    if not found:
        return
    there = ", ".join(found)
    if resume:
        raise UserError(f"{run_dir}: --resume but {STATE_FILE} is missing while {there} are there; cannot tell what "
                        f"was done, nothing was changed: restore {STATE_FILE}, or move the folder away to start over")
    raise UserError(f"{run_dir}: holds another run's files ({there}) but no {STATE_FILE}; nothing was changed: to "
                    f"start over, remove the folder (rm -r {run_dir}) or pass another --output")


def _tuned_preset(cfg: RunConfig, method_cls: type, defaults: dict[str, Any]) -> dict[str, Any]:
    """The tuned values of (benchmark, method) with their provenance and file (``--preset tuned``)."""
    from ..tuning.search_space import search_space
    from ..tuning.tuned import DEFAULT_TUNED_FILE, tuned_entry

    base = {**TRAIN_DEFAULTS, **defaults}
    path = cfg.tuned_file or DEFAULT_TUNED_FILE
    entry = tuned_entry(path, cfg.benchmark, method_cls.name, base, bool(search_space(method_cls, base)))
    return {"file": str(path), **entry}


class RunState:
    """``state.json``: evaluated cells, trained stages and timings (rewritten atomically, checksummed)."""

    def __init__(self, path: Path, writer: bool = True) -> None:
        from ..rundir.integrity import read_sealed_json

        self.path, self.writer = path, writer  # writer: rank 0 (the only process that writes the run folder)
        # plan_run has vetted an existing file (a complete run from before checksums is the only one without)
        self.data: dict[str, Any] = read_sealed_json(path, "run state", legacy_ok=True) if writer and path.exists() else \
            {"cells": {}, "trained": [], "seconds": {"train": {}, "eval": {}}, "complete": False}

    def cell(self, stage: int, task: str) -> dict[str, Any] | None:
        return self.data["cells"].get(str(stage), {}).get(task)

    def set_cell(self, stage: int, task: str, value: dict[str, Any]) -> None:
        self.data["cells"].setdefault(str(stage), {})[task] = value
        self.data["seconds"]["eval"][f"{stage}/{task}"] = value["seconds"]
        self.save()

    def save(self) -> None:
        from ..rundir.integrity import write_sealed_json

        if self.writer:  # rank 0 alone writes the run folder
            write_sealed_json(self.path, self.data)


# Called on every rank with (stage, summary) once a stage is evaluated and on disk, in every run of this
# process (after ``execute``'s own ``on_stage``): watchers of many runs at once, and preemption drills
# (the tests stop a run here: tests/conftest.stop_after_stage).
AFTER_STAGE_HOOKS: list[Callable[[int, dict[str, Any]], None]] = []


@dataclass
class Built:
    """What a run trains and evaluates with, set up exactly as the runner does (also used by tools/bench_speed.py)."""

    strategy: Any
    tasks: list
    collate_train: Any
    collate_eval: Any
    device: Any


def build_strategy(plan: Plan, run_dir: Path | None, progress: bool = False) -> Built:
    """Backbone loaded, strategy built and ``setup`` on the plan's tasks, seeded by the run's seed."""
    import torch

    from ..backbones import load_backbone
    from ..collate import Collator
    from ..seeding import seed_everything
    from ..strategy import RunContext

    cfg = plan.config
    seed_everything(cfg.seed)
    backbone = load_backbone(cfg.backbone, progress=progress, template=plan.hparams.get("template"),
                             preferred_template=plan.benchmark.template)
    strategy = plan.method_cls(backbone, plan.hparams)
    tasks = [plan.benchmark.task(name) for name in plan.order]
    collate_train = Collator(backbone.processor, backbone.template, train=True, image_token=backbone.image_token,
                             cache_mb=float(plan.hparams["collate_cache_mb"]))
    collate_eval = Collator(backbone.processor, backbone.template, train=False, image_token=backbone.image_token)
    # plugins write into the run folder too (analysis files): only rank 0 is given it
    context = RunContext(plan.benchmark, tasks, cfg.seed, run_dir, collate_train, collate_eval)
    seed_everything(cfg.seed)
    strategy.setup(tasks, context)
    device = torch.device("cuda" if cfg.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available() else "cpu")
    strategy.to(device)
    return Built(strategy, tasks, collate_train, collate_eval, device)


def execute(plan: Plan, progress: bool = True,
            on_stage: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the plan; returns the summary. Library output goes to ``logs/console.log``.

    ``on_stage(stage, summary)`` is called once each stage is evaluated and on disk (also for stages a
    resumed run had finished before); an exception it raises stops the run there (tuning prunes so).
    """
    from .. import distributed
    from ..console import library_output_to_log

    # rank 0 alone writes the run folder; the other ranks' library output (the same messages) is dropped
    with library_output_to_log(plan.run_dir, to_file=distributed.rank() == 0):
        return _execute(plan, progress, on_stage)


def _execute(plan: Plan, progress: bool, on_stage: Callable[[int, dict[str, Any]], None] | None) -> dict[str, Any]:
    import torch

    from .. import distributed
    from .progress import RunProgress

    cfg, run_dir, order = plan.config, plan.run_dir, plan.order
    writer = distributed.rank() == 0
    progress = progress and writer
    started = time.time()
    # config.yaml describes the run, not where this machine put it (``output``): a folder is often moved or
    # committed, and an absolute path of the machine that ran it would travel with it
    resolved = {**{k: v for k, v in cfg.to_dict().items() if k not in ("resume", "output")}, "tasks": order,
                "method": plan.method_cls.name}
    if writer:
        if not (run_dir / STATE_FILE).exists():  # a fresh run (or one that failed before its first cell): its config
            atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
        elif plan.resume is not None and plan.resume.new_change:  # --resume --set lr=...: from the next stage on
            from ..rundir.resume import record_change

            # the plan stays as planned: this run goes on with a plan whose change is recorded
            plan = replace(plan, resume=replace(plan.resume, changes=record_change(run_dir, plan.resume.new_change),
                                                new_change=None))
    state = RunState(run_dir / STATE_FILE, writer=writer)
    if writer and not (run_dir / STATE_FILE).exists():
        state.save()  # before any result file: a folder with results always has the state that explains them
    state.data = distributed.broadcast(state.data)  # rank 0's view of what is done (--resume) for every rank
    torch.set_num_threads(max(1, torch.get_num_threads()))
    built = build_strategy(plan, run_dir if writer else None, progress)
    state.data["seconds"]["setup"] = round(time.time() - started, 3)  # this process: imports done, load + setup
    strategy, tasks, collate_train, collate_eval, device = (built.strategy, built.tasks, built.collate_train,
                                                            built.collate_eval, built.device)

    trained = sorted(state.data["trained"])
    last_trained = trained[-1] if trained else 0
    if last_trained:
        from ..rundir.checkpoints import load_checkpoint

        strategy.restore(load_checkpoint(run_dir, last_trained))  # safetensors + JSON: loading runs no code
    display = RunProgress.for_run(plan, state, strategy, last_trained, enabled=progress)

    from . import interrupt
    from .evaluation import stages_to_evaluate

    n = len(tasks)
    test_sets = {t.name: plan.benchmark.test_split(t.name) for t in tasks}
    for stage in range(0, n + 1):
        if stage > last_trained and stage > 0:
            interrupt.doing(f"training stage {stage} (task {tasks[stage - 1].name})")
            interrupt.check()
            if strategy.train_steps(stage - 1) > 0:
                from .divergence import Diverged

                try:
                    _train_stage(plan, strategy, tasks, stage, collate_train, state, display)
                except Diverged as exc:  # the folder says why it stopped (the leaderboard names it)
                    state.data["stopped"] = {"reason": "diverged", "stage": stage, "message": str(exc)}
                    state.save()
                    raise
                state.data.pop("stopped", None)  # a resume with other values trained through
            else:
                strategy.before_task(stage - 1, tasks[stage - 1], None)
            if writer:
                from ..rundir.checkpoints import save_checkpoint

                saving = time.time()
                save_checkpoint(run_dir, stage, strategy)
                io = state.data["seconds"].setdefault("io", {})
                io[str(stage)] = round(time.time() - saving, 3)
            state.data["trained"] = sorted(set(state.data["trained"]) | {stage})
            state.save()
        for col in stages_to_evaluate(stage, n, cfg.eval_mode, strategy.evaluates_stage(stage)):
            task = tasks[col]
            if state.cell(stage, task.name) is not None:
                continue
            interrupt.doing(f"evaluating stage {stage} on {task.name}")
            interrupt.check()
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
            display.cell_done(stage, task.name, result.score)
        display.stage_done(stage)
        summary = write_results(plan, state, strategy, started, complete=(stage == n)) if writer else {}
        if on_stage is not None and writer:
            on_stage(stage, summary)
        for hook in list(AFTER_STAGE_HOOKS):
            hook(stage, summary)
    display.close()
    state.data["complete"] = True
    state.save()
    if writer:  # the run's own heatmap and curves, once its matrix is complete and on disk
        from ..plots import write_run_plots

        line = write_run_plots(run_dir, matrix_from_state(state, order), list(order), summary["curves"],
                               f"{plan.method_cls.name}, order {cfg.order}, seed {cfg.seed}")
        if progress:
            print(line, flush=True)
    return summary


def _train_stage(plan: Plan, strategy: Any, tasks: list, stage: int, collate: Any, state: RunState,
                 display: Any) -> None:
    from .. import distributed
    from .lightning_module import ContinualModule
    from ..loggers import make_logger
    from ..seeding import seed_everything

    cfg, hp = plan.config, plan.hparams
    seed = cfg.seed * 1000 + stage  # training of a stage depends on (seed, stage) only: resume-safe
    seed_everything(seed)
    start = time.time()
    task = tasks[stage - 1]
    data = strategy.train_data(stage - 1, task, plan.benchmark.train_split(task.name))  # replay, joint: more
    steps = strategy.train_steps(stage - 1)
    collate.clear_cache()
    strategy.before_task(stage - 1, tasks[stage - 1], data)
    strategy.train()
    loader = train_loader(data, collate, int(hp["batch_size"]), seed)
    module = ContinualModule(strategy, hp, total_steps=steps, stage=stage, task=tasks[stage - 1].name)
    writer = distributed.rank() == 0
    trainer = make_trainer(plan, module, steps, callbacks=[display.lightning_callback(stage)],  # one display for the run
                           logger=make_logger(cfg.logger, plan.run_dir, stage) if writer else False)
    trainer.fit(module, loader)
    fitted = time.time()
    strategy.eval()
    strategy.after_task(stage - 1, tasks[stage - 1], data)
    strategy.merge(stage - 1)
    if distributed.active():  # statistics reduced across ranks leave every rank with the same state
        distributed.check_same_state(strategy.checkpoint()["tensors"], f"the merge of stage {stage}")
    seconds = state.data["seconds"]
    seconds["train"][str(stage)] = round(time.time() - start, 3)  # all of it: data, fit, after_task, merge
    seconds.setdefault("fit", {})[str(stage)] = round(fitted - start, 3)
    seconds.setdefault("merge", {})[str(stage)] = round(time.time() - fitted, 3)  # after_task + merge


def train_loader(data: Any, collate: Any, batch_size: int, seed: int) -> Any:
    """The training batches of one stage, seeded by ``seed``: the batches one process would draw, each split
    between the ranks (see ShardedBatchSampler)."""
    import torch
    from torch.utils.data import DataLoader

    # One generator for the sampler and the loader, as DataLoader(shuffle=True, generator=g) shares it.
    generator = torch.Generator().manual_seed(seed)
    sampler = ShardedBatchSampler(torch.utils.data.RandomSampler(data, generator=generator), batch_size,
                                  drop_last=len(data) >= batch_size)
    return DataLoader(_undecoded(data), batch_sampler=sampler, collate_fn=collate, generator=generator, num_workers=0)


def make_trainer(plan: Plan, module: Any, steps: int, callbacks: list, logger: Any) -> Any:
    """The Lightning ``Trainer`` of one task (also what tools/bench_speed.py times against a plain loop)."""
    import lightning as L

    cfg, hp = plan.config, plan.hparams
    return L.Trainer(
        max_steps=steps, max_epochs=-1, accelerator=cfg.accelerator, devices=cfg.devices,
        strategy=_lightning_strategy(cfg, module), num_nodes=int(cfg.num_nodes), precision=cfg.precision,
        logger=logger, enable_checkpointing=False, enable_progress_bar=False, callbacks=callbacks,
        enable_model_summary=False, num_sanity_val_steps=0,
        gradient_clip_val=float(hp["grad_clip"]) or None, default_root_dir=str(plan.run_dir),
        log_every_n_steps=max(1, min(50, steps // 4)), use_distributed_sampler=False,
    )


class ShardedBatchSampler:
    """The batches of ``BatchSampler(sampler, batch_size, drop_last)``, each cut into contiguous shares,
    one per rank: N ranks together take exactly the global batch one process would (same seed, same
    order), so a step on N ranks is the single-process step (the loss is normalised by the global token
    count, ``ContinualModule``)."""

    def __init__(self, sampler: Any, batch_size: int, drop_last: bool) -> None:
        from torch.utils.data import BatchSampler

        self.batches = BatchSampler(sampler, batch_size, drop_last)

    def __iter__(self):
        from .. import distributed

        for batch in self.batches:
            yield distributed.shard(batch)

    def __len__(self) -> int:
        return len(self.batches)


def _lightning_strategy(cfg: RunConfig, module: Any) -> Any:
    """``--strategy ddp`` on several processes: Lightning's DDP, told to leave the frozen backbone and every
    buffer (MAny's merge state, Fwd-Prompt's bases) alone: they are equal on every rank by construction, and
    DDP would otherwise broadcast them at every fit (and every step)."""
    from .. import distributed

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


def matrix_from_state(state: RunState, order: list[str]) -> np.ndarray:
    R = np.full((len(order) + 1, len(order)), np.nan)
    for stage, cells in state.data["cells"].items():
        for task, cell in cells.items():
            R[int(stage), order.index(task)] = cell["score"]
    return R


def backbone_checkpoint(spec: str, strategy: Any) -> str:
    """The checkpoint folder's name for a built-in backbone (``tiny-llava-r2-<recipe hash>``), else its path."""
    from ..backbones import BUILTIN_BACKBONES

    source = strategy.backbone.source or spec
    return Path(source).name if spec in BUILTIN_BACKBONES else source


def write_results(plan: Plan, state: RunState, strategy: Any, started: float, complete: bool) -> dict[str, Any]:
    from .. import metrics
    from ..environment import fingerprint
    from .evaluation import decoding_budget, zero_shot_report
    from ..matrix_io import write_matrix_csv

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
        # the values the preset set (for `tuned`: the tuned values; their provenance under "tuned")
        "preset_values": plan.preset_values or {},
        **({"tuned": plan.tuned} if plan.tuned is not None else {}),
        "data_stream": plan.config.data_stream,
        "tasks": order,
        "complete": complete,
        # --resume --set: from which stage on which optimisation settings held (none: hparams throughout)
        "hparam_changes": plan.resume.changes if plan.resume is not None else [],
        "scorers": {t.name: {"scorer": t.scorer, "variant": t.scorer_variant, "chance": t.chance} for t in tasks},
        "decoding": {"cap": plan.hparams["eval_max_new_tokens"],  # the quick preset's 32, or --set
                     "max_new_tokens": {t.name: decoding_budget(t, plan.hparams["eval_max_new_tokens"]) for t in tasks}},
        # test questions the native scorer counts but the test file lacks (CoIN ScienceQA), never generated for
        "absent_test_records": plan.benchmark.info.get("absent_test_records", {}),
        "zero_shot": zero_shot_report(state.data["cells"].get("0", {}), tasks),
        "trainable_parameters": strategy.trainable_parameter_count(),
        "strategy": strategy.report(),
        # train = fit + merge (after_task and merge) per stage; io = strategy checkpoints; setup = backbone
        # loading and strategy setup in the last process (a resumed run sets up again)
        "timings": {"train_seconds": seconds["train"], "eval_seconds_total": round(sum(seconds["eval"].values()), 3),
                    "train_seconds_total": round(sum(seconds["train"].values()), 3),
                    **{f"{part}_seconds_total": round(sum(seconds.get(part, {}).values()), 3)
                       for part in ("fit", "merge", "io")},
                    "setup_seconds": seconds.get("setup"),
                    "wall_seconds_this_process": round(time.time() - started, 3)},
        "environment": fingerprint(strategy),
    })
    atomic_write_json(run_dir / "summary.json", summary)
    return summary
