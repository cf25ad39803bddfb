"""Command line: ``mcit-bench run | ceiling | sweep | tune | leaderboard | metrics | list``.

Imports are lazy: ``mcit-bench --help`` and argument errors never import torch.
Bad input exits with code 2 and a one-line message, before anything is written.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from .errors import RunError, UserError


def run_options() -> argparse.ArgumentParser:
    """The options of a run, shared by ``run``, ``ceiling``, ``sweep`` and ``tune`` (argparse parent): one
    definition, one set of defaults, the ``RunConfig`` defaults (``tests/test_reference_docs.py`` keeps
    docs/reference.md in step)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--benchmark", default="synthetic", help="benchmark name (default: the built-in synthetic)")
    p.add_argument("--backbone", default="tiny-llava", help="built-in name, a save_pretrained folder, or a cached HF id")
    p.add_argument("--preset", default="default",
                   help="default | quick (tiny sizes for smoke tests) | tuned (the values of `mcit-bench tune`; "
                        "tune's trials: default or quick)")
    p.add_argument("--tuned", dest="tuned_file", metavar="FILE",
                   help="tuned values read by --preset tuned (default results/tuning/tuned.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyper-parameter (repeatable), e.g. --set lr=1e-4 (sweep: for every selected "
                        "method that has KEY; tune: fixed for every trial, not a searched one)")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto (GPUs if present), cpu, gpu")
    p.add_argument("--devices", default="1",
                   help="Lightning devices (e.g. 8): one process each, launched once per run")
    p.add_argument("--num-nodes", type=int, default=1, help="machines of --devices processes each (SLURM, torchrun)")
    p.add_argument("--strategy", default="auto", help="Lightning strategy: ddp, fsdp, deepspeed_stage_2, ...")
    p.add_argument("--precision", default="32-true", help="Lightning precision: 32-true, bf16-mixed, ...")
    p.add_argument("--logger", default="csv",
                   help="training-loss logger: csv | tensorboard | wandb | none (tune's trials: none by default)")
    p.add_argument("--data-root", help="folder of a real benchmark in its native layout (ucit, coin)")
    p.add_argument("--image-root", help="image folder, if apart from --data-root")
    p.add_argument("--scorer-variant", dest="scorer_variants", action="append", default=[], metavar="TASK=VARIANT",
                   help="score TASK with another variant of its scorer (repeatable), e.g. ScienceQA=coin_skip_absent")
    return p


def _seed_option() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--seed", type=int, default=0, help="training seed (tune: also the sampler's seed)")
    return p


def _add_run(sub: Any, shared: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", parents=shared, help="train a method over a task order and evaluate the full matrix")
    p.add_argument("--method", required=True, help="registered method name (see `mcit-bench list methods`)")
    p.add_argument("--order", default="1", help="task order number (task_orders/orderK.yaml) or a YAML path")
    p.add_argument("--output", help="run folder (default results/runs/<benchmark>/<method>/order<K>-seed<S>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last completed task")
    p.add_argument("--eval", dest="eval_mode", default="full", choices=["full", "lower"],
                   help="full: every task after every stage (default); lower: skip future tasks (no FWD)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _add_ceiling(sub: Any, shared: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ceiling", parents=shared,
                       help="single-task ceiling: the method trained on each task alone, same budget")
    p.add_argument("--method", required=True, help="registered method name")
    p.add_argument("--tasks", help="comma-separated task names (default: every task of the benchmark)")
    p.add_argument("--root", default="results/runs", help="folder ROOT/<benchmark>/<method>/ceiling-seed<S> (default)")
    p.add_argument("--output", help="ceiling folder (overrides --root)")
    p.add_argument("--quiet", action="store_true")


def _add_sweep(sub: Any, shared: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sweep", parents=shared,
                       help="run every (method, order, seed) combination; skips finished runs, resumes the rest")
    p.add_argument("--methods", default="all", help="'all' (every registered method) or a list: lora-ft,fwd-prompt")
    p.add_argument("--orders", default="all", help="'all' (task_orders/order*.yaml) or a list: 1,3 (YAML paths allowed)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--root", default="results/runs",
                   help="runs go to ROOT/<benchmark>/<method>/order<K>-seed<S> (default results/runs)")
    p.add_argument("--eval", dest="eval_mode", default="full", choices=["full", "lower"])
    p.add_argument("--dry-run", action="store_true", help="validate and list what would run, run nothing")
    p.add_argument("--verbose", action="store_true", help="also print each run's own progress (stages, bars)")


def _add_leaderboard(sub: Any) -> None:
    p = sub.add_parser("leaderboard", help="one row per method: mean ± std over orders and seeds of complete runs")
    p.add_argument("runs_dir", metavar="RUNS_DIR", help="folder searched recursively for run folders (summary.json)")
    p.add_argument("--format", default="md", choices=["md", "latex", "csv"])
    p.add_argument("--metrics", default="avg,last,mft,bwt,fgt,fwd",
                   help="summary metrics (and named variants, e.g. fgt.max_all_rows), comma-separated")
    p.add_argument("--output", help="write the table here (default: print)")
    p.add_argument("--plots", metavar="DIR", help="also write PNG plots here (needs the 'plots' extra: matplotlib)")
    p.add_argument("--paper", metavar="FILE.yaml", help="paper-reported numbers, shown in a separate block")
    p.add_argument("--reference", default="zero-shot,joint",
                   help="reference rows (bounds), shown but never marked best (default zero-shot,joint)")
    p.add_argument("--baseline", default="lora-ft",
                   help="method every row is paired against (Wilcoxon signed-rank p, bootstrap interval of the mean "
                        "difference over the same order/seed runs); '' = no paired column (default lora-ft)")
    p.add_argument("--paired-metric", default="last", help="metric of the paired comparison (default last)")


def _add_tune(sub: Any, shared: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tune", parents=shared, help="select a method's hyper-parameters with Optuna on a stream "
                                                    "disjoint from the reported one (needs the 'tune' extra)")
    p.add_argument("--method", help="the method to tune (its YAML's search_space); omit with --report")
    p.add_argument("--trials", type=int, default=20, help="finished (complete or pruned) trials the study ends "
                                                          "with; use the same number for every method (default 20)")
    p.add_argument("--budget", default="reduced", choices=["reduced", "full"],
                   help="reduced (default): half the steps per task and half the test/validation records")
    p.add_argument("--order", default="1", help="task order of every trial (default 1)")
    p.add_argument("--root", default="results/tuning",
                   help="studies (ROOT/<benchmark>/<method>.db), trial runs, tuned.yaml and report.md")
    p.add_argument("--pruner", default="median", choices=["median", "none"],
                   help="median (default): stop a trial whose running avg after a task is below the median")
    p.add_argument("--startup-trials", type=int, default=3, help="completed trials before pruning starts (default 3)")
    p.add_argument("--prune-from-task", type=int, default=2,
                   help="first task after which a trial may be pruned (default 2: after task 1 the running avg "
                        "holds no forgetting)")
    p.add_argument("--report", action="store_true", help="only rewrite ROOT/report.md from the stored studies")
    p.add_argument("--verbose", action="store_true", help="also print each trial's own progress")
    p.set_defaults(logger="none")  # a study's trials keep no loss logs unless asked (--logger csv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcit-bench", description=(
        "Benchmark harness for Multimodal Continual Instruction Tuning: accuracy, FGT and FWD matrices."))
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    # a fresh parent per command: argparse shares a parent's actions, so tune's set_defaults would reach the others
    _add_run(sub, [run_options(), _seed_option()])
    c = sub.add_parser("convert", help="validate a downloaded real benchmark and write the canonical format")
    c.add_argument("benchmark", help="ucit | coin")
    c.add_argument("--data-root", required=True, help="folder of the benchmark in its native layout")
    c.add_argument("--image-root", help="image folder, if apart from --data-root")
    c.add_argument("--output", required=True, help="folder for benchmark.json and tasks/<task>/*.jsonl")
    c.add_argument("--no-strict-counts", action="store_true",
                   help="accept record counts that differ from the release's (a subset)")
    _add_ceiling(sub, [run_options(), _seed_option()])
    _add_sweep(sub, [run_options()])  # --seeds, not --seed
    _add_leaderboard(sub)
    _add_tune(sub, [run_options(), _seed_option()])
    m = sub.add_parser("metrics", help="summary metrics of an accuracy-matrix CSV")
    m.add_argument("matrix", help="CSV with columns stage,<task1>,...; empty cell = not evaluated")
    m.add_argument("--json", action="store_true", help="print the full summary as JSON")
    bk = sub.add_parser("backbone", help="the built-in tiny backbone: rebuild it from its recipe")
    bk_sub = bk.add_subparsers(dest="backbone_command", required=True)
    bb = bk_sub.add_parser("build", help="rebuild a built-in backbone from its recipe and print its calibration")
    bb.add_argument("--name", default="tiny-llava", help="built-in backbone (default tiny-llava)")
    bb.add_argument("--output", help="folder to write (default: the user cache, backbones/<recipe tag>)")
    bb.add_argument("--ship", action="store_true",
                    help="write it into the package (mcit_bench/backbones/shipped/<recipe tag>), replacing the "
                         "shipped copy: for a changed recipe")
    bb.add_argument("--quiet", action="store_true", help="no progress bar")
    lst = sub.add_parser("list", help="registered methods, benchmarks, task orders and backbones")
    lst.add_argument("what", nargs="?", default="all", choices=["all", "methods", "benchmarks", "orders", "backbones"])
    return parser


def _version() -> str:
    """The installed distribution's version (pyproject's), without importing the package's heavy parts."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcit-bench")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "unknown (not installed)"


def _devices(raw: str) -> Any:
    return int(raw) if raw.isdigit() else raw


def _run_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``RunConfig`` fields of the shared run options (``run_options``), checked."""
    from .config import parse_scorer_variants
    from .loggers import check_logger

    check_logger(args.logger)
    if args.num_nodes < 1:
        raise UserError(f"--num-nodes {args.num_nodes}: expected an integer >= 1")
    return dict(benchmark=args.benchmark, backbone=args.backbone, preset=args.preset, tuned_file=args.tuned_file,
                accelerator=args.accelerator, devices=_devices(args.devices), num_nodes=args.num_nodes,
                strategy=args.strategy, precision=args.precision, logger=args.logger, data_root=args.data_root,
                image_root=args.image_root, scorer_variants=parse_scorer_variants(args.scorer_variants))


def run_config(args: argparse.Namespace) -> Any:
    """The ``RunConfig`` of ``mcit-bench run``'s arguments."""
    from .config import RunConfig, parse_set

    return RunConfig(method=args.method, order=args.order, seed=args.seed, output=args.output, resume=args.resume,
                     eval_mode=args.eval_mode, overrides=parse_set(args.overrides), **_run_fields(args))


def cmd_run(args: argparse.Namespace) -> int:
    from .api import RankStopped, run

    cfg = run_config(args)
    try:
        result = run(cfg, progress=not args.quiet, command=args.argv, on_plan=None if args.quiet else _announce)
    except RankStopped as exc:  # torchrun / SLURM: rank 0 said what is wrong
        return exc.exit_code
    if result.rank == 0:
        print(_format_summary(result.summary))
    return 0


def _announce(plan: Any, processes: int) -> None:
    ranks = f" ({processes} processes)" if processes > 1 else ""
    print(f"mcit-bench: {plan.method_cls.name} on {plan.benchmark.name}, order {plan.config.order}: "
          f"{' -> '.join(plan.order)}{ranks}\n  run folder: {plan.run_dir}", flush=True)
    if plan.hparams.get("eval_max_new_tokens"):
        cfg = plan.config
        source = "--set eval_max_new_tokens" if "eval_max_new_tokens" in cfg.overrides else f"preset {cfg.preset}"
        print(f"  {_cap_line(plan.hparams['eval_max_new_tokens'], source)}", flush=True)
    if plan.resume is not None:
        print(f"  {_resume_line(plan)}", flush=True)


def _resume_line(plan: Any) -> str:
    """Where a resumed run goes on and what it reuses (read from the checked state)."""
    info, order = plan.resume, plan.order
    if info.complete:
        return "resuming: the run is complete; nothing left to do (results rewritten from its state)"
    last = info.trained[-1] if info.trained else 0
    reused = f"reusing stages 1-{last} (checkpoints/stage{last}.safetensors)" if last else "no trained stage to reuse"
    where = f"stage {last + 1} ({order[last]})" if last < len(order) else f"the evaluation of stage {last}"
    return f"resuming at {where}: {reused}, evaluated cells are kept"


def cmd_ceiling(args: argparse.Namespace) -> int:
    from .ceiling import plan_ceiling, run_ceiling
    from .config import RunConfig, parse_set

    cfg = RunConfig(method=args.method, seed=args.seed, output=args.output, overrides=parse_set(args.overrides),
                    **_run_fields(args))
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    plans, folder = plan_ceiling(cfg, tasks, root=args.root)
    result = run_ceiling(plans, folder, progress=not args.quiet, command=args.argv)
    cells = ", ".join(f"{t} {v:.2f}" for t, v in result["scores"].items())
    print(f"ceiling of {result['method']}: mean {result['mean']:.2f} ({cells}) -> {folder}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import time

    from .config import parse_set
    from .engine.interrupt import Interrupted
    from .sweep import SweepSpec, describe_plan, plan_sweep, run_sweep

    options = dict(_run_fields(args), eval_mode=args.eval_mode)
    spec = SweepSpec(methods=args.methods, orders=args.orders, seeds=args.seeds, root=args.root,
                     overrides=parse_set(args.overrides), run_options=options)
    started = time.time()
    items = plan_sweep(spec)  # every name and every run folder validated before anything runs
    if args.dry_run:
        print("\n".join(describe_plan(items)))
        return 0
    try:
        result = run_sweep(items, progress=args.verbose, echo=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        return 130  # run_sweep already said how to resume
    except Interrupted as exc:  # SIGINT / SIGTERM: the current run stopped at a safe point (130 / 143)
        return exc.exit_code
    print(f"sweep: {len(result.done)} run, {len(result.skipped)} already complete (skipped), "
          f"{len(result.failed)} failed" + (f", {len(result.busy)} busy (another job writes them; rerun later)"
                                            if result.busy else "") + f"; wall time {time.time() - started:.1f} s")
    for item, message in result.failed:
        print(f"  failed: {item.method} order {item.order} seed {item.seed}: {message}")
    return 1 if result.failed or result.busy else 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .config import parse_set

    if args.report:
        from .tuning.study import require_optuna
        from .tuning.report import write_report

        require_optuna()
        print(f"tuning report: {write_report(args.root)}")
        return 0
    if not args.method:
        raise UserError("tune: --method is required (or --report to only rewrite the report)")
    if args.tuned_file:
        raise UserError("tune: --tuned is read by --preset tuned; a study's trials run on --preset default or quick")
    options = _run_fields(args)
    for key in ("benchmark", "backbone", "preset", "tuned_file"):  # TuneSpec fields of their own
        options.pop(key)
    from .engine.interrupt import Interrupted
    from .tuning.study import TuneSpec, plan_tune, require_optuna, run_tune

    require_optuna()
    spec = TuneSpec(method=args.method, benchmark=args.benchmark, trials=args.trials, budget=args.budget,
                    preset=args.preset, order=args.order, seed=args.seed, backbone=args.backbone, root=args.root,
                    overrides=parse_set(args.overrides), pruner=args.pruner, startup_trials=args.startup_trials,
                    prune_from_task=args.prune_from_task,
                    run_options=options)
    plan = plan_tune(spec)  # every name, key and range checked before the first trial
    print(f"tune {plan.method} on {spec.benchmark}: {spec.trials} trials, objective {plan.objective}; "
          f"study {plan.db}\n  stream: {plan.stream}\n  budget: {spec.budget} ("
          + ", ".join(f"{k}={v}" for k, v in plan.resolved_budget.items()) + ")", flush=True)
    try:
        run_tune(plan, echo=lambda line: print(line, flush=True), progress=args.verbose, command=args.argv)
    except (KeyboardInterrupt, Interrupted) as exc:
        print("tune interrupted; rerun the same command to resume the study", flush=True)
        return exc.exit_code if isinstance(exc, Interrupted) else 130
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard import build_leaderboard, render, write_output

    board = build_leaderboard(args.runs_dir, metrics=args.metrics.split(","), reference=args.reference.split(","),
                              paper_file=args.paper, baseline=args.baseline.strip() or None,
                              paired_metric=args.paired_metric)
    for folder, why in board.skipped:  # every folder left out, by name (stderr: the table stays clean on stdout)
        print(f"leaderboard: skipped {folder}: {why}", file=sys.stderr)
    for group in board.groups[1:]:  # not skipped, but never averaged with the main table's runs
        for row in group.rows:
            for run in row.runs:
                print(f"leaderboard: {run.path}: other setting: in table {group.index}, not averaged with table 1",
                      file=sys.stderr)
    plots: list = []
    if args.plots:
        from .plots import write_plots

        plots = write_plots(board, args.plots)
    text = render(board, args.format, plots=plots, output=args.output)
    if args.output:
        write_output(args.output, text)
        print(f"leaderboard: {board.n_runs} complete runs, {len(board.groups)} setting(s) -> {args.output}"
              + (f"; {len(plots)} plots in {args.plots}" if plots else ""))
    else:
        print(text, end="")
    return 0


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _cap_line(cap: int, source: str = "eval_max_new_tokens") -> str:
    return f"answers capped at {cap} new tokens ({source}; uncapped, each task has its native budget)"


def _too_small_note(zero: dict[str, Any]) -> str:
    """Why 'above chance' cannot be shown on some tasks: too few test records for the shift test."""
    from .engine.evaluation import ALPHA, SHUFFLE_SHIFTS

    small = {name: z.get("shifts") or 0 for name, z in zero.items() if z.get("judgeable") is False}
    if not small:
        return ""
    fewest = min(small.values())
    which = "every task" if len(small) == len(zero) else ", ".join(small)
    if not fewest:
        return f" (not judged on {which}: no shifted pairing, chance_shifts=0 or under 2 test records)"
    return (f" (cannot be judged on {which}: {fewest} shifted pairings give at best p={1 / (fewest + 1):.2f} > "
            f"{ALPHA}; it takes {SHUFFLE_SHIFTS + 1} test records and chance_shifts={SHUFFLE_SHIFTS})")


def _format_summary(summary: dict[str, Any]) -> str:
    keys = ("avg", "last", "mft", "bwt", "fgt", "fwd")
    line = "  ".join(f"{k}={_fmt(summary.get(k))}" for k in keys)
    cap = (summary.get("decoding") or {}).get("cap")
    if cap:
        line += f"\n{_cap_line(cap)}"
    absent = summary.get("absent_test_records") or {}
    if absent:
        variants = summary.get("scorers") or {}
        line += "\nabsent from the test files (counted by the native scorer, never asked): " + ", ".join(
            f"{task} {n} ({(variants.get(task) or {}).get('variant')})" for task, n in absent.items())
    zero = summary.get("zero_shot") or {}
    if zero:
        above = [f"{name} {_fmt(z['score'])} (shuffled {_fmt(z['shuffled'])}, p={z['p_value']:.2f})"
                 for name, z in zero.items() if z["above_chance"]]
        line += f"\nzero-shot above chance on {len(above)} of {len(zero)} tasks" + (f": {', '.join(above)}" if above else "")
        line += _too_small_note(zero)
    return line


def cmd_convert(args: argparse.Namespace) -> int:
    import importlib

    from .benchmark import CONVERTERS

    if args.benchmark not in CONVERTERS:
        raise UserError(f"convert: unknown benchmark {args.benchmark!r}; convertible: {', '.join(sorted(CONVERTERS))}")
    module_name, func_name = CONVERTERS[args.benchmark].split(":")
    convert = getattr(importlib.import_module(module_name), func_name)
    out = convert(args.data_root, args.output, image_root=args.image_root, strict_counts=not args.no_strict_counts)
    print(f"mcit-bench: wrote {args.benchmark} in the canonical format to {out} "
          f"(use it with --data-root {out})")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from .matrix_io import read_matrix_csv
    from .metrics import summarize

    R, names = read_matrix_csv(args.matrix)
    summary = summarize(R)
    if args.json:
        print(json.dumps({"tasks": names, **summary}, indent=2))
    else:
        print(_format_summary(summary))
        curves = summary["curves"]
        for name, values in curves.items():
            print(f"{name:>6}: " + " ".join(_fmt(v) for v in values))
    return 0


def cmd_backbone(args: argparse.Namespace) -> int:
    from .backbones.rebuild import build_builtin

    return build_builtin(args.name, output=args.output, ship=args.ship, progress=not args.quiet)


def cmd_list(args: argparse.Namespace) -> int:
    what = args.what
    if what in ("all", "methods"):
        from .registry import aliases_of, list_methods

        print("methods:")
        for name in list_methods():
            aliases = aliases_of(name)
            print(f"  {name}" + (f"  (aliases: {', '.join(aliases)})" if aliases else ""))
    from .benchmark import BENCHMARKS

    if what in ("all", "benchmarks"):
        print("benchmarks:\n" + "\n".join(f"  {n}" for n in sorted(BENCHMARKS)))
    if what in ("all", "orders"):
        import importlib

        from .config import order_tasks

        for name in sorted(BENCHMARKS):  # the canonical task names live beside each loader, no data is read
            names = [t.name for t in importlib.import_module(BENCHMARKS[name].split(":")[0]).TASKS]
            print(f"orders ({name}):\n" + "\n".join(f"  {number}: {' -> '.join(tasks)}"
                                                   for number, tasks in order_tasks(name, names)))
    if what in ("all", "backbones"):
        from .backbones import BUILTIN_BACKBONES

        print("backbones (built-in; or any save_pretrained folder / cached HF id):\n"
              + "\n".join(f"  {n}" for n in BUILTIN_BACKBONES))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # named by the hint that resumes an interrupted run
    from .engine.interrupt import Interrupted

    try:
        commands = {"run": cmd_run, "ceiling": cmd_ceiling, "sweep": cmd_sweep, "leaderboard": cmd_leaderboard,
                    "convert": cmd_convert, "metrics": cmd_metrics, "list": cmd_list, "tune": cmd_tune,
                    "backbone": cmd_backbone}
        return commands[args.command](args)
    except Interrupted as exc:  # SIGINT (130) / SIGTERM (143): what was interrupted, what is safe, how to resume
        print(f"mcit-bench: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except (UserError, RunError) as exc:  # bad input (2) or a run that cannot go on (1): one line, no traceback
        print(f"mcit-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
