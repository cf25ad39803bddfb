"""Runs on two CPU processes (gloo): same predictions as one process, one gradient, one state on every rank.

Every run here uses a two-task order and the quick preset with ``eval_batch_size=4`` (two test batches a
cell, so both ranks generate); the 2-rank runs are launched as users launch them (the CLI in a
subprocess) and shared between the assertions (module-scoped).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mcit_bench.cli import main
from mcit_bench.registry import list_methods

from conftest import BACKBONE, assert_learned

TWO_TASKS = "tasks: [icons, chart]\n"
EXTRA = ["--set", "eval_batch_size=4"]


def _args(out: Path, method: str, order: Path, *extra: str) -> list[str]:
    return ["run", "--method", method, "--order", str(order), "--backbone", BACKBONE, "--preset", "quick",
            "--output", str(out), "--quiet", "--logger", "none", "--accelerator", "cpu", *EXTRA, *extra]


def _two_ranks(out: Path, method: str, order: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mcit_bench.cli", *_args(out, method, order, "--devices", "2", "--strategy", "ddp",
                                                         *extra)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _predictions(run: Path) -> dict[str, str]:
    out = {}
    for path in sorted((run / "predictions").rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            out[f"{path.parent.name}/{path.stem}/{record['uid']}"] = record["text"]
    return out


class Pairs:
    """(one-process run, two-rank run) of a method on the two-task order, made once per module on demand."""

    def __init__(self, root: Path) -> None:
        self.root, self.made = root, {}
        self.order = root / "order.yaml"
        self.order.write_text(TWO_TASKS)

    def __call__(self, method: str) -> tuple[Path, Path]:
        if method not in self.made:
            single, double = self.root / method / "one", self.root / method / "two"
            proc = _two_ranks(double, method, self.order)  # the 2-rank run beside the in-process one
            assert main(_args(single, method, self.order)) == 0
            _, err = proc.communicate(timeout=900)
            assert proc.returncode == 0, err[-3000:]
            self.made[method] = (single, double)
        return self.made[method]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: Path) -> Pairs:
    return Pairs(tmp_path_factory.mktemp("ddp"))


@pytest.mark.parametrize("method", list_methods())
def test_two_ranks_give_the_single_process_predictions_and_metrics(pairs: Pairs, method: str) -> None:
    single, double = pairs(method)
    assert_learned(single)
    a, b = _predictions(single), _predictions(double)
    assert a.keys() == b.keys() and len(a) > 0
    same = sum(a[k] == b[k] for k in a) / len(a)
    assert same >= 0.99, f"{method}: {same:.1%} of predictions equal"
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (single, double))
    for key in ("avg", "last", "mft", "bwt", "fgt", "fwd"):
        if sa[key] is None:
            assert sb[key] is None
        else:
            assert abs(sa[key] - sb[key]) <= 0.5, (key, sa[key], sb[key])
    # counts a method gathers while training or evaluating are summed over the ranks
    for key in ("routing_accuracy", "stat_tokens", "task_identification_accuracy", "prompt_usage_train",
                "prompt_usage_eval_last_stage"):
        assert sa["strategy"].get(key) == sb["strategy"].get(key), key
    # rank 0 alone wrote: one config, one state, no stray files from rank 1
    assert json.loads((double / "state.json").read_text())["complete"] is True
    assert sorted(p.name for p in double.iterdir()) == sorted(p.name for p in single.iterdir())


def test_killed_rank_stops_the_run_and_resume_completes_it(pairs: Pairs, tmp_path: Path) -> None:
    order = pairs.order
    reference = pairs("lora-ft")[1]
    assert_learned(reference)
    out = tmp_path / "cut"
    proc = _two_ranks(out, "lora-ft", order)
    deadline = time.time() + 600
    while not (out / "checkpoints" / "stage1.json").exists():  # mid-run: task 1 trained, task 2 to come
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert "rank 1" in err and "SIGKILL" in err and "--resume" in err
    assert not json.loads((out / "state.json").read_text())["complete"]
    again = _two_ranks(out, "lora-ft", order, "--resume")
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err[-3000:]
    assert (out / "accuracy.csv").read_text() == (reference / "accuracy.csv").read_text()
    assert _predictions(out) == _predictions(reference)


LONG = ["--set", "steps_per_task=60"]  # a task 2 long enough to stop inside its training


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_a_two_rank_run_stops_every_rank_and_resume_completes_it(pairs: Pairs, tmp_path: Path,
                                                                          signum: int) -> None:
    """SIGTERM (a scheduler's preemption) or SIGINT to the launching rank mid-training: one line, exit
    128 + signal, no rank left running, the lock released; --resume then gives the uninterrupted matrix."""
    order = pairs.order
    out = tmp_path / "cut"
    proc = _two_ranks(out, "lora-ft", order, *LONG)
    deadline = time.time() + 600
    while not (out / "predictions" / "stage1" / "chart.jsonl").exists():  # stage 1 evaluated: task 2 trains
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.1)
    time.sleep(1.0)  # inside Lightning's fit of task 2, where Lightning's own SIGTERM handler would be
    workers = _children(proc.pid)
    assert len(workers) == 1
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=120)  # a hang in a collective would time out here
    assert proc.returncode == 128 + signum, err[-2000:]
    lines = [line for line in err.splitlines() if "interrupted by" in line]
    assert len(lines) == 1 and signal.Signals(signum).name in lines[0] and "--resume" in lines[0], err[-2000:]
    time.sleep(0.5)
    assert not Path(f"/proc/{workers[0]}").exists() or "zombie" in Path(f"/proc/{workers[0]}/status").read_text()
    assert not (out / "run.lock").exists()
    assert not json.loads((out / "state.json").read_text())["complete"]
    again = _two_ranks(out, "lora-ft", order, *LONG, "--resume")
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err[-3000:]
    whole = tmp_path / "whole"  # the same two-rank run, uninterrupted
    ref = _two_ranks(whole, "lora-ft", order, *LONG)
    _, err = ref.communicate(timeout=900)
    assert ref.returncode == 0, err[-3000:]
    assert_learned(whole)
    assert (out / "accuracy.csv").read_text() == (whole / "accuracy.csv").read_text()
    assert _predictions(out) == _predictions(whole)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


# ---------------------------------------------------------------------------- in two processes (spawn)
def _spawn(fn, out: Path, *args) -> None:
    import torch.multiprocessing as mp

    port = str(29500 + os.getpid() % 1000)
    mp.spawn(fn, args=(2, port, str(out), *args), nprocs=2, join=True)


def _join(rank: int, world: int, port: str) -> None:
    import atexit

    import torch.distributed as dist

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
    dist.init_process_group("gloo", rank=rank, world_size=world)
    atexit.register(dist.destroy_process_group)  # gloo aborts at exit while its group is still up


def _build(method: str, **overrides):
    from mcit_bench.backbones import load_backbone
    from mcit_bench.collate import Collator
    from mcit_bench.config import RunConfig
    from mcit_bench.engine.runner import plan_run
    from mcit_bench.seeding import seed_everything
    from mcit_bench.strategy import RunContext

    plan = plan_run(RunConfig(method=method, order="1", backbone=BACKBONE, preset="quick", overrides=overrides,
                              output="/nonexistent-run"), check_existing=False)
    backbone = load_backbone(BACKBONE, progress=False, template=plan.hparams.get("template"),
                             preferred_template=plan.benchmark.template)
    seed_everything(0)
    strategy = plan.method_cls(backbone, plan.hparams)
    tasks = [plan.benchmark.task(name) for name in plan.order]
    collate = Collator(backbone.processor, backbone.template, train=True, image_token=backbone.image_token)
    strategy.setup(tasks, RunContext(plan.benchmark, tasks, 0, None, collate, collate))
    return strategy, plan, tasks, collate


def _gradients(normalise: bool) -> dict[str, torch.Tensor]:
    """Gradient of one lora-ft step on the first 8 training records, as DDP forms it (sum / world)."""
    from mcit_bench import distributed
    from mcit_bench.engine.lightning_module import rank_normalised

    strategy, plan, tasks, collate = _build("lora-ft")
    data = plan.benchmark.train_split(tasks[0].name)
    records = [dict(data[i]) for i in range(8)]
    batch = collate(distributed.shard(records))
    losses = strategy.train_step(batch)
    if normalise:
        losses = rank_normalised(losses, batch)
    torch.stack(list(losses.values())).sum().backward()
    return {n: distributed.all_reduce(p.grad) / distributed.world_size()
            for n, p in strategy.named_parameters() if p.requires_grad}


def _grad_worker(rank: int, world: int, port: str, out: str) -> None:
    _join(rank, world, port)
    grads = {"normalised": _gradients(True), "naive": _gradients(False)}
    if rank == 0:
        torch.save(grads, Path(out) / "two.pt")


def test_two_rank_gradient_equals_the_one_process_gradient(tmp_path: Path, tiny_backbone: Path) -> None:
    one = _gradients(True)
    _spawn(_grad_worker, tmp_path)
    two = torch.load(tmp_path / "two.pt")
    for name, g in one.items():
        rel = float((two["normalised"][name] - g).norm() / g.norm().clamp(min=1e-30))
        assert rel <= 1e-5, (name, rel)
    # the test can fail: per-rank means averaged (no global token count) give another gradient
    worst = max(float((two["naive"][n] - g).norm() / g.norm().clamp(min=1e-30)) for n, g in one.items())
    assert worst > 1e-3


def _statistics() -> dict[str, torch.Tensor]:
    """MAny's Gram matrices and prototype after task 1 (before the merge), its state after the merge, and
    Fwd-Prompt's input-embedding Gram, pre-trained space and memory after task 1 (as projectors)."""
    from mcit_bench import distributed

    out: dict[str, torch.Tensor] = {}
    many, plan, tasks, _ = _build("many")
    data = plan.benchmark.train_split(tasks[0].name)
    many.before_task(0, tasks[0], data)
    many.after_task(0, tasks[0], data)
    out.update({f"many_gram/{g}": G for g, G in many._pending["grams"].items()})
    out["many_prototype"] = many._pending["prototype"].double()
    many.merge(0)
    distributed.check_same_state(many.checkpoint()["tensors"], "the merge")
    out.update({f"many_state/{k}": v.double() for k, v in many.checkpoint()["tensors"].items() if "lpm" in k})
    fwd, plan, tasks, _ = _build("fwd-prompt")
    data = plan.benchmark.train_split(tasks[0].name)
    out["fwd_gram"] = fwd.embedding_gram(data, 16, 3)[0]
    fwd.before_task(0, tasks[0], data)
    fwd.after_task(0, tasks[0], data)
    out["fwd_memory"] = fwd.memory @ fwd.memory.T  # the space, not its basis (eigenvector signs are free)
    out["fwd_pretrained"] = fwd.pretrained_basis @ fwd.pretrained_basis.T
    return out


def _stats_worker(rank: int, world: int, port: str, out: str) -> None:
    _join(rank, world, port)
    stats = _statistics()
    if rank == 0:
        torch.save(stats, Path(out) / "two.pt")


def test_statistics_on_two_ranks_equal_one_process(tmp_path: Path, tiny_backbone: Path) -> None:
    one = _statistics()
    _spawn(_stats_worker, tmp_path)
    two = torch.load(tmp_path / "two.pt")
    assert one.keys() == two.keys() and any(k.startswith("many_gram/") for k in one)
    for key, value in one.items():
        rel = float((two[key] - value).norm() / value.norm().clamp(min=1e-30))
        assert rel <= 1e-5, (key, rel)


def _checksum_worker(rank: int, world: int, port: str, out: str) -> None:
    from mcit_bench import distributed

    _join(rank, world, port)
    state = {"w": torch.arange(6, dtype=torch.float64)}
    distributed.check_same_state(state, "a merge")  # equal: passes
    state["w"][rank] += 1e-12 * rank  # rank 1 differs by one ulp-sized step
    try:
        distributed.check_same_state(state, "a merge")
    except RuntimeError as exc:
        (Path(out) / f"raised{rank}").write_text(str(exc))
    import torch.distributed as dist

    dist.barrier()


def test_state_checksum_catches_a_rank_that_differs(tmp_path: Path) -> None:
    _spawn(_checksum_worker, tmp_path)
    assert "differs between ranks" in (tmp_path / "raised0").read_text()
    assert (tmp_path / "raised1").is_file()


def test_sweep_passes_the_process_flags_through(tmp_path: Path, tiny_backbone: Path) -> None:
    order = tmp_path / "order.yaml"
    order.write_text(TWO_TASKS)
    assert main(["sweep", "--methods", "zero-shot", "--orders", str(order), "--backbone", BACKBONE, "--preset", "quick",
                 "--root", str(tmp_path / "runs"), "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
                 "--logger", "none", "--set", "eval_batch_size=4"]) == 0
    config = next((tmp_path / "runs").rglob("config.yaml")).read_text()
    assert "devices: 2" in config and "strategy: ddp" in config and "num_nodes: 1" in config
    summary = json.loads(next((tmp_path / "runs").rglob("summary.json")).read_text())
    assert summary["complete"] is True


def test_two_rank_sweep_item_runs_through_the_library_and_equals_the_two_rank_run(pairs: Pairs, tmp_path: Path) -> None:
    """A sweep item on two processes is one ``mcit_bench.run`` in the sweep's own process (rank 0; rank 1 is
    a ``mcit_bench.worker`` started from the configuration): its matrix and predictions are the two-rank
    ``mcit-bench run``'s, and the sweep's process gets its environment and threads back."""
    double = pairs("lora-ft")[1]
    assert_learned(double)
    threads, env = torch.get_num_threads(), dict(os.environ)
    root = tmp_path / "runs"
    assert main(["sweep", "--methods", "lora-ft", "--orders", str(pairs.order), "--backbone", BACKBONE, "--preset",
                 "quick", "--root", str(root), "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
                 "--logger", "none", *EXTRA]) == 0
    run = root / "synthetic" / "lora-ft" / "order-order-seed0"
    assert json.loads((run / "state.json").read_text())["complete"] is True
    assert (run / "accuracy.csv").read_text() == (double / "accuracy.csv").read_text()
    assert _predictions(run) == _predictions(double)
    assert torch.get_num_threads() == threads and dict(os.environ) == env and not torch.distributed.is_initialized()
    assert not (run / "run.lock").exists()
