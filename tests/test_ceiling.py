"""mcit-bench ceiling: each task trained alone from the untouched backbone; resumable; read by the leaderboard."""
from __future__ import annotations

import json
from pathlib import Path

from mcit_bench.cli import main

from conftest import BACKBONE

TASKS = "styles,chart"


def _ceiling(folder: Path, method: str = "lora-ft") -> int:
    return main(["ceiling", "--method", method, "--backbone", BACKBONE, "--preset", "quick", "--tasks", TASKS,
                 "--output", str(folder), "--quiet", "--logger", "none"])


def test_ceiling_trains_each_task_alone_resumes_and_feeds_the_leaderboard(tmp_path: Path, tiny_backbone: Path,
                                                                          capsys) -> None:
    root = tmp_path / "runs"
    folder = root / "synthetic" / "lora-ft" / "ceiling-seed0"
    assert _ceiling(folder) == 0
    result = json.loads((folder / "ceiling.json").read_text())
    assert result["tasks"] == ["styles", "chart"] and result["complete"]
    for task in ("styles", "chart"):
        state = json.loads((folder / task / "state.json").read_text())
        config = (folder / task / "config.yaml").read_text()
        assert state["trained"] == [1] and f"- {task}" in config  # a one-task order: only this task trained
        assert result["scores"][task] == state["cells"]["1"][task]["score"]
    assert result["mean"] == sum(result["scores"].values()) / 2
    # a second call resumes: nothing is trained again, same numbers
    stamp = (folder / "styles" / "state.json").stat().st_mtime_ns
    assert _ceiling(folder) == 0
    assert (folder / "styles" / "state.json").stat().st_mtime_ns == stamp
    assert json.loads((folder / "ceiling.json").read_text())["scores"] == result["scores"]
    # a continual run of the same method and budget on those two tasks gets its ceiling column
    order = tmp_path / "two.yaml"
    order.write_text("tasks: [styles, chart]\n")
    assert main(["run", "--method", "lora-ft", "--order", str(order), "--backbone", BACKBONE, "--preset", "quick",
                 "--output", str(root / "synthetic" / "lora-ft" / "two"), "--quiet", "--logger", "none"]) == 0
    capsys.readouterr()
    assert main(["leaderboard", str(root), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    assert len(lines) == 2  # the ceiling's one-task runs are not read as continual runs
    assert float(row[header.index("ceiling_mean")]) == round(result["mean"], 6)


def test_unknown_task_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["ceiling", "--method", "lora-ft", "--backbone", BACKBONE, "--tasks", "nope",
                 "--output", str(tmp_path / "c")]) == 2
    assert "unknown task" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_a_tuned_ceiling_feeds_the_tuned_runs_row(tmp_path: Path, tiny_backbone: Path, capsys) -> None:
    """The leaderboard's ceiling must come from the same hyper-parameters as the row: with --preset tuned, the
    tuned values; a default-preset ceiling beside it must not be matched."""
    from mcit_bench.tuning.tuned import write_tuned

    tuned = tmp_path / "tuned.yaml"
    write_tuned(tuned, "synthetic", "lora-ft", {"lr": 0.004, "lora_r": 8}, {"trials": 3})
    root = tmp_path / "runs" / "synthetic" / "lora-ft"
    common = ["--method", "lora-ft", "--backbone", BACKBONE, "--quiet", "--logger", "none", "--set", "steps_per_task=2",
              "--set", "train_size=8", "--set", "test_size=4", "--set", "batch_size=4", "--set", "chance_shifts=0"]
    assert main(["ceiling", *common, "--tasks", TASKS, "--preset", "tuned", "--tuned", str(tuned),
                 "--output", str(root / "ceiling-seed0")]) == 0
    result = json.loads((root / "ceiling-seed0" / "ceiling.json").read_text())
    assert result["hparams"]["lr"] == 0.004 and result["hparams"]["lora_r"] == 8
    order = tmp_path / "two.yaml"
    order.write_text("tasks: [styles, chart]\n")
    assert main(["run", *common, "--order", str(order), "--preset", "tuned", "--tuned", str(tuned),
                 "--output", str(root / "two")]) == 0
    capsys.readouterr()
    assert main(["leaderboard", str(tmp_path / "runs"), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    assert float(row[header.index("ceiling_mean")]) == round(result["mean"], 6)
    # the same run against a default-preset ceiling only: no ceiling (other hyper-parameters)
    (root / "ceiling-seed0").rename(tmp_path / "aside")
    assert main(["ceiling", *common, "--tasks", TASKS, "--output", str(root / "ceiling-default")]) == 0
    capsys.readouterr()
    assert main(["leaderboard", str(tmp_path / "runs"), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    assert len(lines) == 2 and row[header.index("ceiling_mean")] == ""
