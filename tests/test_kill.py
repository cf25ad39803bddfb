"""SIGKILL at random moments: no torn file, and ``--resume`` ends with the uninterrupted run's results.

Each run is a child of a forkserver that has imported torch, transformers and Lightning once, so a child
starts in milliseconds and the kill moments (drawn within the measured duration of an uninterrupted run,
from a fixed seed) fall into real work: backbone loading, training, evaluation, checkpoint and result
writes. A kill that comes after the child has already finished is not counted; the test draws again.
"""
from __future__ import annotations

import multiprocessing
import os
import random
import sys
import time
from pathlib import Path

from conftest import BACKBONE, assert_every_file_parses, assert_learned

CTX = multiprocessing.get_context("forkserver")
CTX.set_forkserver_preload(["torch", "lightning", "transformers", "peft", "datasets", "mcit_bench.cli",
                            "mcit_bench.engine.runner", "mcit_bench.backbones", "mcit_bench.engine.evaluation",
                            "mcit_bench.collate", "mcit_bench.engine.lightning_module", "mcit_bench.sweep"])
TINY = ["--preset", "quick", "--backbone", BACKBONE, "--set", "test_size=4", "--set", "train_size=8",
        "--set", "steps_per_task=3"]
KILLS = 10
SWEEP_KILLS = 3


def _cli(argv: list[str], log: str) -> None:
    """Child process: ``mcit-bench ARGV`` with its output in ``log``; the exit code is the CLI's."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from mcit_bench.cli import main

    sys.exit(main(argv))


def _warm_up() -> None:
    """Start the forkserver (it imports torch & co. once) before any run is timed."""
    child = CTX.Process(target=os.getpid)
    child.start()
    child.join(600)


def _start(argv: list[str], log: Path) -> multiprocessing.Process:
    child = CTX.Process(target=_cli, args=(argv, str(log)))
    child.start()
    return child


def _finish(argv: list[str], log: Path) -> float:
    started = time.monotonic()
    child = _start(argv, log)
    child.join(600)
    assert child.exitcode == 0, log.read_text()[-3000:]
    return time.monotonic() - started


def _kill_at(argv: list[str], log: Path, moment: float) -> tuple[bool, float]:
    """Start, SIGKILL after ``moment`` seconds; (was the child still running when killed, seconds it ran).

    A child that finished before ``moment`` tells how long a whole run takes now: the callers draw later
    moments within that, so a machine that speeds up (or slows down) between runs does not make draws miss.
    """
    import time

    start = time.perf_counter()
    child = _start(argv, log)
    child.join(moment)
    alive = child.exitcode is None
    elapsed = time.perf_counter() - start
    child.kill()
    child.join()
    return alive, elapsed


def outcome(run: Path) -> dict[str, str]:
    """What must equal the uninterrupted run's: the matrix, every prediction and the final tensors."""
    import hashlib

    import torch
    import yaml

    from mcit_bench.rundir.checkpoints import load_checkpoint

    files = {str(p.relative_to(run)): p.read_text() for p in sorted(run.rglob("*"))
             if p.suffix in (".csv", ".jsonl") and "logs" not in p.relative_to(run).parts}
    final = load_checkpoint(run, len(yaml.safe_load((run / "config.yaml").read_text())["tasks"]))["tensors"]
    files["final tensors"] = repr({k: hashlib.sha256(v.contiguous().view(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
                                   for k, v in sorted(final.items())})
    return files


def _order(folder: Path) -> str:
    path = folder / "short.yaml"
    path.write_text("tasks: [icons, chart]\n")  # both score above zero at zero shot
    return str(path)


def test_kill_anywhere_then_resume_gives_the_uninterrupted_results(tmp_path: Path, tiny_backbone: Path) -> None:
    order = _order(tmp_path)

    def args(folder: Path, *extra: str) -> list[str]:
        return ["run", "--method", "lora-ft", "--order", order, "--output", str(folder), "--quiet", *TINY, *extra]

    _warm_up()
    duration = _finish(args(tmp_path / "reference"), tmp_path / "reference.log")
    reference = outcome(tmp_path / "reference")
    assert_learned(tmp_path / "reference")
    rng = random.Random(18)
    killed = identical = attempts = 0
    while killed < KILLS:
        attempts += 1
        assert attempts <= 3 * KILLS, f"only {killed} of {attempts} kills hit a running child"
        run, log = tmp_path / f"kill{attempts}", tmp_path / f"kill{attempts}.log"
        hit, elapsed = _kill_at(args(run), log, rng.uniform(0.0, duration))
        if not hit:
            duration = min(duration, elapsed)
            continue
        killed += 1
        assert_every_file_parses(run, temp_files_allowed=True)
        _finish(args(run, "--resume"), log)
        assert_every_file_parses(run, temp_files_allowed=True)
        identical += outcome(run) == reference
    print(f"\nkill test: {killed} kills in {attempts} draws (uninterrupted run {duration:.1f} s), "
          f"{identical} resumed runs identical to it")
    assert identical == killed


def test_killed_sweep_resumes_to_the_uninterrupted_results(tmp_path: Path, tiny_backbone: Path) -> None:
    order = _order(tmp_path)
    runs = [("synthetic", m, "order-short-seed0") for m in ("lora-ft", "zero-shot")]

    def args(root: Path) -> list[str]:
        return ["sweep", "--methods", "lora-ft,zero-shot", "--orders", order, "--root", str(root), *TINY]

    _warm_up()
    duration = _finish(args(tmp_path / "reference"), tmp_path / "reference.log")
    reference = [outcome(tmp_path / "reference" / Path(*r)) for r in runs]
    assert_learned(tmp_path / "reference" / Path(*runs[0]))
    rng = random.Random(180)
    killed = identical = attempts = 0
    while killed < SWEEP_KILLS:  # a fresh sweep each time, killed once, then rerun to the end
        attempts += 1
        assert attempts <= 3 * SWEEP_KILLS, f"only {killed} of {attempts} kills hit a running sweep"
        root, log = tmp_path / f"kill{attempts}", tmp_path / f"kill{attempts}.log"
        hit, elapsed = _kill_at(args(root), log, rng.uniform(0.0, duration))
        if not hit:
            duration = min(duration, elapsed)
            continue
        killed += 1
        assert_every_file_parses(root, temp_files_allowed=True)
        _finish(args(root), log)  # the same command again: finished runs skipped, the killed one resumed
        assert_every_file_parses(root, temp_files_allowed=True)
        identical += [outcome(root / Path(*r)) for r in runs] == reference
    print(f"\nsweep kill test: {killed} kills in {attempts} draws (uninterrupted sweep {duration:.1f} s), "
          f"{identical} resumed sweeps identical to it")
    assert identical == killed
