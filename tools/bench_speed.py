"""What a run costs and where the time goes: the harness's Lightning step against a plain PyTorch loop on
the same strategy, batches and optimiser, arithmetic rate, evaluation batched against one sample at a time,
and (``--run DIR``) the time split of a finished run.

    python tools/bench_speed.py [--method lora-ft] [--order 3] [--steps 150] [--threads 2]
                                [--set precision=bf16-mixed] [--run RUN_DIR] [--out results/costs/speed_cpu.txt]

Everything is measured in one process, side by side, in alternating blocks (plain, harness, plain, harness),
so load from other jobs on the machine slows both alike; the ratio is what to compare across machines.
The training batches are the first ``--steps`` batches the runner draws for the order's first task
(collated once beforehand: collation is timed on its own). FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` on the same batches; the machine's rate is a large matrix
product timed here (float32 and bfloat16), not a datasheet figure.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="lora-ft")
    p.add_argument("--order", default="3")
    p.add_argument("--backbone", default="tiny-llava")
    p.add_argument("--preset", default="default")
    p.add_argument("--steps", type=int, default=30, help="steps per timed block")
    p.add_argument("--blocks", type=int, default=20, help="timed blocks of each loop, alternating")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--eval-samples", type=int, default=100, help="test samples generated batched (bs 1: a third)")
    p.add_argument("--eval-task", default=None, help="task evaluated (default: the order's longest answers)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="run settings, as `run --set`")
    p.add_argument("--precision", default="32-true", help="Lightning precision of the harness and plain loop")
    p.add_argument("--compile", action="store_true", help="torch.compile the language model (both loops)")
    p.add_argument("--run", default=None, help="a finished run folder: print its time split")
    p.add_argument("--out", default=None, help="also write the report here")
    return p.parse_args()


def plan_for(args: argparse.Namespace, folder: Path) -> Any:
    from mcit_bench.config import RunConfig, parse_set
    from mcit_bench.engine.runner import plan_run

    cfg = RunConfig(method=args.method, order=args.order, backbone=args.backbone, preset=args.preset,
                    accelerator="cpu", logger="csv", output=str(folder), precision=args.precision,
                    overrides=parse_set(args.set))
    return plan_run(cfg, check_existing=False)


def autocast(precision: str) -> Any:
    """The autocast Lightning's ``precision`` sets up, for the plain loop."""
    import contextlib

    if precision == "bf16-mixed":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def plain_loop(module: Any, batches: list[dict], precision: str, grad_clip: float) -> list[float]:
    """The harness's step without Lightning: train_step, backward, clip, AdamW, scheduler. Seconds per step."""
    opt = module.configure_optimizers()
    optimizer, scheduler = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    strategy, times = module.strategy, []
    start = time.perf_counter()
    for batch in as_loader(batches):  # the same loader the harness iterates: fetching is in both
        with autocast(precision):
            losses = strategy.train_step(batch)
        torch.stack(list(losses.values())).sum().backward()
        strategy.before_optimizer_step()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
        optimizer.step()
        strategy.after_optimizer_step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return times


def as_loader(batches: list[dict]) -> Any:
    """A DataLoader yielding the collated batches as they are (one per step)."""
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)


def harness_loop(plan: Any, module: Any, batches: list[dict]) -> tuple[list[float], float]:
    """``runner.make_trainer``'s fit over the same batches; seconds per step (batch start to batch start) and
    the whole fit's wall seconds."""
    import lightning as L

    from mcit_bench.loggers import make_logger
    from mcit_bench.engine.runner import make_trainer

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_train_batch_start(self, *args: Any) -> None:
            self.marks.append(time.perf_counter())

        def on_train_end(self, *args: Any) -> None:
            self.marks.append(time.perf_counter())

    clock = Clock()
    # the run's own logger (CSV into the temporary folder): what it costs is part of the harness
    trainer = make_trainer(plan, module, len(batches), callbacks=[clock],
                           logger=make_logger(plan.config.logger, plan.run_dir, 1))
    start = time.perf_counter()
    trainer.fit(module, as_loader(batches))
    wall = time.perf_counter() - start
    return [b - a for a, b in zip(clock.marks, clock.marks[1:])], wall


def count_flops(strategy: Any, batches: list[dict], precision: str) -> float:
    """FLOPs of forward + backward over ``batches`` (the optimiser's elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        for batch in batches:
            with autocast(precision):
                losses = strategy.train_step(batch)
            torch.stack(list(losses.values())).sum().backward()
    for p in strategy.parameters():
        p.grad = None
    return float(counter.get_total_flops())


def gemm_rate(dtype: torch.dtype, n: int = 2048, repeat: int = 10) -> float:
    """FLOP/s of an n x n x n matrix product on this machine (the practical peak of the arithmetic)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n ** 3 * repeat / (time.perf_counter() - start)


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters (/proc/stat: user nice system idle iowait irq softirq steal), Linux only."""
    try:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    except OSError:
        return None


def median_ms(times: list[float], skip: int = 5) -> float:
    return 1000 * statistics.median(times[skip:] if len(times) > 2 * skip else times)


def run_split(folder: Path) -> list[str]:
    summary = json.loads((folder / "summary.json").read_text())
    t = summary["timings"]
    parts = {"training (fit)": t.get("fit_seconds_total"), "after_task + merge": t.get("merge_seconds_total"),
             "evaluation (generate + score)": t["eval_seconds_total"], "checkpoints (I/O)": t.get("io_seconds_total"),
             "set-up (load backbone, strategy)": t.get("setup_seconds")}
    wall = t["wall_seconds_this_process"]
    lines = [f"time split of {folder} ({summary['method']}, order {summary['order']}, "
             f"{summary['environment'].get('torch_threads', '?')} threads): wall {wall:.1f} s in the run loop"]
    known = 0.0
    for name, value in parts.items():
        if value is not None:
            known += value
            lines.append(f"  {name:34s}: {value:7.1f} s  {100 * value / wall:5.1f}%")
    lines.append(f"  {'rest (results, statistics, plots)':34s}: {wall - known:7.1f} s  {100 * (wall - known) / wall:5.1f}%")
    return lines


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from mcit_bench.console import library_output_to_log

    folder = Path(tempfile.mkdtemp(prefix="mcit-bench-speed-"))
    with library_output_to_log(folder):  # Lightning's banners and warnings go to the folder's log
        measure(args, folder)


def measure(args: argparse.Namespace, folder: Path) -> None:
    from mcit_bench.engine.evaluation import evaluate_cell
    from mcit_bench.engine.lightning_module import ContinualModule
    from mcit_bench.engine.runner import build_strategy, train_loader

    out: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        out.append(line)

    plan = plan_for(args, folder)
    hp = plan.hparams
    counters = cpu_times()
    built = build_strategy(plan, None)
    strategy, task = built.strategy, built.tasks[0]
    say(f"# python tools/bench_speed.py {' '.join(sys.argv[1:])}")
    say(f"# {datetime.date.today()}; {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; {args.method} on the first task of order {args.order} ({task.name}), "
        f"batch {hp['batch_size']}, precision {args.precision}")
    data = plan.benchmark.train_split(task.name)
    strategy.before_task(0, task, data)
    strategy.train()
    loader = train_loader(data, built.collate_train, int(hp["batch_size"]), seed=plan.config.seed * 1000 + 1)
    need = max(args.steps * 2, len(loader) + 10)  # into the second epoch: collation from the cache is timed too
    batches, cold, warm = [], [], []
    while len(batches) < need:  # the first epoch decodes and tokenises; later ones hit the collate cache
        start = time.perf_counter()
        for batch in loader:
            (cold if len(batches) < len(loader) else warm).append(time.perf_counter() - start)
            batches.append(batch)
            if len(batches) == need:
                break
            start = time.perf_counter()
    module = ContinualModule(strategy, hp, total_steps=2 * args.blocks * args.steps)
    clip = float(hp["grad_clip"])

    if args.compile:  # the language model is where the time goes; shapes vary between batches
        lm_owner = strategy.backbone.model.model
        lm_owner.language_model = torch.compile(lm_owner.language_model, dynamic=True)
        start = time.perf_counter()
        plain_loop(module, batches[:3], args.precision, clip)
        say(f"torch.compile             : {time.perf_counter() - start:7.1f} s for the first three steps (compiling)")
    plain_loop(module, batches[:5], args.precision, clip)  # first-call allocations, not timed
    plain, harness, startup, ratios = [], [], [], []
    for i in range(args.blocks):  # short alternating blocks: drifts in machine load hit both alike
        block = batches[(i % 2) * args.steps:(i % 2 + 1) * args.steps]
        if i % 2 == 0:  # ABBA: neither loop always runs right after the other
            times = plain_loop(module, block, args.precision, clip)
            steps, wall = harness_loop(plan, module, block)
        else:
            steps, wall = harness_loop(plan, module, block)
            times = plain_loop(module, block, args.precision, clip)
        plain += times
        harness += steps
        startup.append(wall - sum(steps))
        ratios.append(median_ms(steps, 2) / median_ms(times, 2))
    p_ms, h_ms = median_ms(plain), median_ms(harness)
    say()
    say(f"== training step (same strategy, batches, AdamW, schedule, clipping; {args.blocks} alternating blocks "
        f"of {args.steps} steps)")
    say(f"plain PyTorch loop        : {p_ms:7.2f} ms/step (median)")
    say(f"harness ({plan.config.logger} logger)      : {h_ms:7.2f} ms/step (median), "
        f"+{statistics.median(startup):.2f} s start-up per fit (a task)")
    say(f"ratio harness / plain     : {h_ms / p_ms:7.3f} (medians); per block {statistics.median(ratios):.3f} "
        f"median, {min(ratios):.3f}-{max(ratios):.3f}")
    if cold:
        say(f"collation                 : {1000 * statistics.mean(cold):7.2f} ms/batch first epoch (decode, "
            f"tokenise), {1000 * statistics.mean(warm) if warm else float('nan'):7.2f} ms/batch from the cache")

    tokens = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)
    label = sum(int((b["labels"] != -100).sum()) for b in batches) / len(batches)
    flops = count_flops(strategy, batches[:20], args.precision) / 20
    rate = flops / (p_ms / 1000)
    fp32, bf16 = gemm_rate(torch.float32), gemm_rate(torch.bfloat16)
    say()
    say("== arithmetic")
    say(f"tokens per step           : {tokens:7.1f} (image + text, no padding), {label:.1f} answer tokens")
    say(f"tokens/s                  : {tokens / (p_ms / 1000):9.0f} plain loop, {tokens / (h_ms / 1000):9.0f} harness")
    say(f"FLOPs per step            : {flops / 1e9:9.3f} GFLOP (forward + backward, FlopCounterMode)")
    say(f"achieved                  : {rate / 1e9:9.2f} GFLOP/s")
    say(f"2048^3 matrix product     : {fp32 / 1e9:9.1f} GFLOP/s float32, {bf16 / 1e9:9.1f} GFLOP/s bfloat16")
    say(f"fraction of the product   : {100 * rate / fp32:9.2f}% of float32's rate")

    # the order's task with the longest answers (a caption task on the built-in benchmark), unless named
    etask = next((t for t in built.tasks if t.name == args.eval_task), None) if args.eval_task else \
        max(built.tasks, key=lambda t: int(t.max_new_tokens))
    test = plan.benchmark.test_split(etask.name)
    n = min(args.eval_samples, len(test))
    sub, sub1 = test.select(range(n)), test.select(range(max(1, n // 3)))
    strategy.eval()
    calls = []
    hook = strategy.backbone.model.register_forward_pre_hook(lambda *a: calls.append(1))
    batched = evaluate_cell(strategy, sub, etask, built.collate_eval, int(hp["eval_batch_size"]),
                            hp["eval_max_new_tokens"], built.device)
    batched_calls, calls[:] = len(calls), []
    single = evaluate_cell(strategy, sub1, etask, built.collate_eval, 1, hp["eval_max_new_tokens"], built.device)
    hook.remove()
    b_rate, s_rate = n / batched.seconds, len(sub1) / single.seconds
    n_batches = -(-n // int(hp["eval_batch_size"]))
    prompt = built.collate_eval([dict(r) for r in sub.select(range(min(n, 16)))])
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(prompt["input_ids"], prompt["attention_mask"])]
    # the prefix every prompt shares up to the first image token (image embeddings differ per sample)
    image_id = strategy.backbone.image_token_id
    shortest = min(min(len(r), r.index(image_id) if image_id in r else len(r)) for r in rows)
    shared = next((i for i in range(shortest) if len({r[i] for r in rows}) > 1), shortest)
    words = [len(str(a["text"]).split()) for a in batched.predictions]
    say()
    say(f"== evaluation ({etask.name}, greedy, {etask.max_new_tokens} new tokens at most, scoring included; the "
        f"model as trained above)")
    say(f"batch {int(hp['eval_batch_size']):4d}                : {b_rate:7.1f} samples/s ({n} samples)")
    say(f"batch    1                : {s_rate:7.1f} samples/s ({len(sub1)} samples)")
    say(f"speed-up                  : {b_rate / s_rate:7.2f}x")
    same = sum(a == b for a, b in zip(batched.predictions, single.predictions))
    say(f"same answers              : {same} of {len(sub1)}")
    say(f"decoding steps per batch  : {batched_calls / n_batches:7.1f} of {etask.max_new_tokens} allowed "
        f"(generation stops once every answer has ended; answers {statistics.mean(words):.1f} words on average)")
    say(f"shared prompt prefix      : {shared} of {statistics.mean(map(len, rows)):.1f} prompt tokens "
        f"before the image (what a prefix cache could skip)")
    if args.run:
        say()
        say("== a whole run")
        for line in run_split(Path(args.run)):
            say(line)
    after = cpu_times()
    if counters and after:
        delta = [b - a for a, b in zip(counters, after)]
        say()
        say(f"machine during the benchmark: {100 * delta[7] / max(1, sum(delta)):.0f}% of CPU time stolen by the "
            f"host, {100 * delta[3] / max(1, sum(delta)):.0f}% idle, load average {os.getloadavg()[0]:.2f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
