"""The harness's training step: what it logs and which optimiser kernel it picks."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mcit_bench.cli import main
from mcit_bench.engine.lightning_module import ContinualModule, fused_adamw

from conftest import quick_args


def test_logging_only_the_written_steps_writes_what_logging_every_step_wrote(
        tmp_path: Path, tiny_backbone: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 10 steps a task: log_every_n_steps = 2, so half the steps' values reach metrics.csv
    args = ("--logger", "csv", "--set", "steps_per_task=10")
    assert main(quick_args(tmp_path / "lean", "lora-ft", "1", *args)) == 0
    monkeypatch.setattr(ContinualModule, "_logger_writes_this_step", lambda self: True)  # self.log every step
    assert main(quick_args(tmp_path / "every", "lora-ft", "1", *args)) == 0
    for stage in (1, 6):
        lean = (tmp_path / "lean" / "run" / "logs" / f"stage{stage}" / "metrics.csv").read_text()
        every = (tmp_path / "every" / "run" / "logs" / f"stage{stage}" / "metrics.csv").read_text()
        assert lean == every
        rows = lean.splitlines()
        assert "train/lm" in rows[0] and "train/loss" in rows[0]
        assert len(rows) == 1 + 5  # steps 2, 4, 6, 8, 10


def test_fused_adamw_only_where_the_device_has_the_kernel() -> None:
    cpu = [{"params": [torch.nn.Parameter(torch.zeros(2))]}]
    meta = [{"params": [torch.nn.Parameter(torch.zeros(2, device="meta"))]}]
    assert fused_adamw(cpu, True) is True
    assert fused_adamw(cpu, False) is False  # --set fused_optimizer=false
    assert fused_adamw(meta, True) is False
    assert fused_adamw([{"params": []}], True) is False


def test_speed_benchmark_runs_and_splits_a_run(tmp_path: Path, tiny_backbone: Path) -> None:
    """tools/bench_speed.py end to end on the tiny backbone (no speed asserted: the script reports it)."""
    import json
    import subprocess
    import sys

    assert main(quick_args(tmp_path, "lora-ft", "1")) == 0
    timings = json.loads((tmp_path / "run" / "summary.json").read_text())["timings"]
    assert 0 < timings["fit_seconds_total"] <= timings["train_seconds_total"]
    assert timings["merge_seconds_total"] >= 0 and timings["io_seconds_total"] > 0 and timings["setup_seconds"] > 0
    out = tmp_path / "speed.txt"
    tool = Path(__file__).resolve().parents[1] / "tools" / "bench_speed.py"
    subprocess.run([sys.executable, str(tool), "--backbone", "tiny-llava", "--preset", "quick", "--order", "1",
                    "--steps", "3", "--blocks", "2", "--eval-samples", "6", "--run", str(tmp_path / "run"),
                    "--out", str(out)], check=True, capture_output=True)
    report = out.read_text()
    ratio = next(line for line in report.splitlines() if line.startswith("ratio harness / plain"))
    assert float(ratio.split(":")[1].split()[0]) > 0
    assert "of 2" in next(line for line in report.splitlines() if line.startswith("same answers"))  # 6 // 3 samples
    split = [line for line in report.splitlines() if line.strip().endswith("%") and " s " in line]
    assert len(split) == 6 and abs(sum(float(line.split()[-1][:-1]) for line in split) - 100) < 0.5
