"""Sweep: validation up front, interruption + resume without redoing finished work, failures do not stop it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcit_bench.cli import main
from mcit_bench.sweep import run_status

from conftest import BACKBONE, stop_after_stage

# tiny budget: the mechanics are under test, not the scores
TINY = ["--preset", "quick", "--backbone", BACKBONE, "--logger", "none", "--set", "test_size=2", "--set", "train_size=8",
        "--set", "steps_per_task=2"]


def short_order(folder: Path, tasks: list[str]) -> str:
    """A task-order YAML with fewer tasks: a 3-task sweep costs a fraction of a 6-task one."""
    path = folder / "short.yaml"
    path.write_text("tasks: [" + ", ".join(tasks) + "]\n")
    return str(path)


def sweep_args(root: Path, order: str, *extra: str) -> list[str]:
    return ["sweep", "--methods", "lora-ft,zero-shot", "--orders", order, "--root", str(root), *TINY, *extra]


def test_bad_names_fail_before_anything_is_written(tmp_path: Path, capsys) -> None:
    root = tmp_path / "runs"
    assert main(["sweep", "--methods", "lora-ft,nope", "--root", str(root)]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["sweep", "--orders", "1,9", "--root", str(root)]) == 2
    assert "unknown order '9'" in capsys.readouterr().err
    assert main(["sweep", "--methods", "zero-shot", "--set", "lora_r=4", "--root", str(root)]) == 2
    assert "unknown key(s) lora_r" in capsys.readouterr().err  # lora_r exists, but not for zero-shot
    assert main(["sweep", "--seeds", "0,x", "--root", str(root)]) == 2
    assert not root.exists()


def test_run_status_reads_state_and_summary(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert run_status(run)[0] == "new"
    run.mkdir()
    (run / "state.json").write_text(json.dumps({"cells": {"0": {"a": {}, "b": {}}}, "trained": [1], "complete": False}))
    assert run_status(run) == ("resume", "resume (trained stages 1; 2 cells evaluated)")
    (run / "summary.json").write_text(json.dumps({"complete": True}))  # last stage written, final flag not yet
    assert run_status(run)[0] == "complete"


def test_interrupted_sweep_resumes_and_never_reruns_finished_work(tmp_path: Path, tiny_backbone: Path,
                                                                  monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    root = tmp_path / "runs"
    order = short_order(tmp_path, ["styles", "chart", "icons"])
    lora, zero = (root / "synthetic" / m / "order-short-seed0" for m in ("lora-ft", "zero-shot"))
    # 1. preempted in the middle of the first run (after stage 2 is on disk)
    stop_after_stage(monkeypatch, 2)
    with pytest.raises(SystemExit):
        main(sweep_args(root, order))
    state = json.loads((lora / "state.json").read_text())
    assert state["trained"] == [1, 2] and state["complete"] is False and not zero.exists()
    kept = {p: p.stat().st_mtime_ns for p in [lora / "checkpoints" / "stage2.safetensors", lora / "predictions" / "stage2" /
                                               "chart.jsonl", lora / "config.yaml"]}
    stop_after_stage(monkeypatch, None)
    capsys.readouterr()
    assert main(sweep_args(root, order, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert f"lora-ft order {order} seed 0: resume (trained stages 1,2" in out and f"zero-shot order {order} seed 0: new" in out
    assert not zero.exists()  # a dry run writes nothing

    # 2. the same command again: resumes the partial run (finished stages untouched), runs the other
    assert main(sweep_args(root, order)) == 0
    out = capsys.readouterr().out
    assert f"[1/2] lora-ft order {order} seed 0: resume" in out and f"[2/2] zero-shot order {order} seed 0: done in" in out
    assert "sweep: 2 run, 0 already complete (skipped), 0 failed; wall time" in out
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    for run in (lora, zero):
        assert json.loads((run / "state.json").read_text())["complete"] is True
    summary = json.loads((lora / "summary.json").read_text())
    assert summary["complete"] is True and summary["last"] is not None

    # 3. once more: everything is complete, nothing is touched
    done = {p: p.stat().st_mtime_ns for run in (lora, zero) for p in run.rglob("*") if p.is_file()}
    assert main(sweep_args(root, order)) == 0
    out = capsys.readouterr().out
    assert f"[1/2] lora-ft order {order} seed 0: complete, skipped" in out and "0 run, 2 already complete" in out
    assert {p: p.stat().st_mtime_ns for run in (lora, zero) for p in run.rglob("*") if p.is_file()} == done

    # 4. the leaderboard of the sweep: one row per method, one run each
    assert main(["leaderboard", str(root), "--format", "csv", "--output", str(tmp_path / "board.csv")]) == 0
    rows = (tmp_path / "board.csv").read_text().splitlines()
    assert len(rows) == 3 and {r.split(",")[1] for r in rows[1:]} == {"lora-ft", "zero-shot"}


def test_a_failing_run_is_reported_and_the_sweep_goes_on(tmp_path: Path, tiny_backbone: Path, capsys) -> None:
    root = tmp_path / "runs"
    # lora_targets only exists for lora-ft: its LoRA matches no module and peft raises at setup
    order = short_order(tmp_path, ["styles"])
    assert main(sweep_args(root, order, "--set", "lora_targets=no_such_module")) == 1
    out = capsys.readouterr().out
    assert f"[1/2] lora-ft order {order} seed 0: FAILED after" in out and f"[2/2] zero-shot order {order} seed 0: done in" in out
    assert "0 already complete (skipped), 1 failed" in out
    log = root / "synthetic" / "lora-ft" / "order-short-seed0" / "error.log"
    assert "Traceback" in log.read_text()
    assert json.loads((root / "synthetic" / "zero-shot" / "order-short-seed0" / "state.json").read_text())["complete"]
