"""The console of a run: the harness's own progress and results only; library chatter goes to the log file."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from mcit_bench.cli import _format_summary
from mcit_bench.engine.progress import RunProgress

from conftest import BACKBONE

# What Lightning, transformers and Python warnings print when left alone (one per kind of chatter).
LIBRARY_LINES = ("GPU available", "TPU available", "Tip:", "litlogger", "LeafSpec", "deprecated", "Warning",
                 "Epoch ", "Trainer.fit", "Loading weights", "it/s")


def _cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    order = tmp_path / "order.yaml"
    order.write_text("tasks: [icons, chart]\n")  # two tasks: every kind of output, in a fraction of the time
    args = [sys.executable, "-m", "mcit_bench.cli", "run", "--method", "lora-ft", "--order", str(order),
            "--backbone", BACKBONE, "--preset", "quick", "--output", str(tmp_path / "run"), *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=900, env=dict(os.environ))


def test_console_shows_no_library_banners_tips_or_warnings(tmp_path: Path, tiny_backbone: Path) -> None:
    done = _cli(tmp_path)
    assert done.returncode == 0, done.stderr
    console = done.stdout + done.stderr
    assert not [marker for marker in LIBRARY_LINES if marker in console], console
    assert "stage 0/2 zero-shot" in done.stdout and "stage 2/2 chart" in done.stdout  # the run's own display
    log = (tmp_path / "run" / "logs" / "console.log").read_text()
    assert "GPU available" in log and "Trainer.fit" in log  # kept, not lost


def test_quiet_prints_only_the_summary(tmp_path: Path, tiny_backbone: Path) -> None:
    done = _cli(tmp_path, "--quiet")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert done.stdout == _format_summary(summary) + "\n" and done.stderr == ""


def test_quiet_still_prints_errors(tmp_path: Path) -> None:
    done = _cli(tmp_path, "--quiet", "--set", "no_such_key=1")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("mcit-bench: error:") and len(done.stderr.strip().splitlines()) == 1


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_line_redrawn_a_few_times_per_second() -> None:
    stream, out = _Tty(), io.StringIO()
    display = RunProgress(["icons", "chart"], train_steps={1: 5000, 2: 5000}, eval_cells={0: 2, 1: 2, 2: 2},
                          stream=stream, out=out, interval=0.25)
    display.cell_done(0, "icons", 10.0)
    display.cell_done(0, "chart", 20.0)
    display.stage_done(0)
    for step in range(1, 5001):  # far faster than 4 per second: drawn at most once or twice
        display.train_step(1, step, loss=1.5)
    assert stream.getvalue().count("\r") <= 4  # each draw and each clear starts with a carriage return
    assert out.getvalue() == "  stage 0/2 zero-shot (0 s): icons 10.0  chart 20.0\n"
    display.interval = 0.0
    display.train_step(2, 1, loss=1.25)
    assert display.line.startswith("stage 2/2 chart · step 1/5000 · loss 1.250 · run ETA")
    assert display.eta_seconds() is not None and display.eta_seconds() >= 0


def test_library_warnings_go_to_the_log_and_the_harness_warnings_also_to_the_console(tmp_path: Path) -> None:
    import warnings

    from mcit_bench.console import library_output_to_log

    library_file = str(Path(warnings.__file__).parent / "site-packages" / "lightning" / "pytorch" / "x.py")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with library_output_to_log(tmp_path) as log:
            warnings.warn_explicit("lib: LeafSpec is deprecated", DeprecationWarning, library_file, 1)
            warnings.warn_explicit("lib: something odd", UserWarning, library_file, 2)
            warnings.warn("harness: accuracy matrix has all values <= 1", UserWarning)
            warnings.warn("harness: old knob", DeprecationWarning)
    assert [str(w.message) for w in seen] == ["harness: accuracy matrix has all values <= 1"]  # the console
    text = log.read_text()
    assert all(m in text for m in ("LeafSpec is deprecated", "something odd", "all values <= 1", "old knob"))
