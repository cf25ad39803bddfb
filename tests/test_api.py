"""The library entry point and what it rests on: an immutable plan, one set of run options, resume commands."""
from __future__ import annotations

import copy
import json
import dataclasses
from pathlib import Path

import pytest

from mcit_bench.cli import build_parser, run_config, run_options
from mcit_bench.config import RunConfig

from conftest import BACKBONE

COMMANDS = ("run", "ceiling", "sweep", "tune")


def _parse(command: str, *extra: str):
    required = [] if command == "sweep" else ["--method", "lora-ft"]
    return build_parser().parse_args([command, *required, *extra])


def test_plan_run_leaves_the_callers_config_unchanged(tmp_path: Path) -> None:
    from mcit_bench.engine.runner import plan_run

    cfg = RunConfig(method="lora-ft", preset="quick", backbone=BACKBONE, overrides={"lr": 1e-4},
                    output=str(tmp_path / "run"))
    before = copy.deepcopy(cfg.to_dict())
    plan = plan_run(cfg)
    assert cfg.to_dict() == before and cfg.hparams == {}
    assert plan.config is not cfg and plan.config.hparams == plan.hparams
    assert plan.hparams["lr"] == 1e-4 and plan.hparams["steps_per_task"] == 4  # --set over the quick preset
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.hparams = {}  # type: ignore[misc]
    assert plan_run(cfg).hparams == plan.hparams  # planning twice resolves the same values


def test_every_run_command_has_the_same_run_options_and_defaults() -> None:
    shared = [a.dest for a in run_options()._actions]
    assert {"accelerator", "devices", "num_nodes", "strategy", "precision", "logger", "backbone", "preset",
            "tuned_file", "overrides", "data_root", "image_root", "benchmark", "scorer_variants"} <= set(shared)
    parsed = {c: vars(_parse(c)) for c in COMMANDS}
    for dest in shared:
        values = {c: parsed[c][dest] for c in COMMANDS}
        if dest == "logger":  # the one documented exception: a study's trials keep no loss logs unless asked
            assert values == {"run": "csv", "ceiling": "csv", "sweep": "csv", "tune": "none"}
        else:
            assert len({repr(v) for v in values.values()}) == 1, (dest, values)
    assert {parsed[c]["accelerator"] for c in COMMANDS} == {"auto"}
    assert {parsed[c]["seed"] for c in ("run", "ceiling", "tune")} == {0} and "seed" not in parsed["sweep"]
    # the CLI's defaults are the library's: `mcit-bench run` and RunConfig(method=...) are the same run
    assert run_config(_parse("run")) == RunConfig(method="lora-ft")


def test_the_composed_resume_command_parses_back_to_the_same_config(tmp_path: Path) -> None:
    from mcit_bench.api import run_command

    cfg = RunConfig(method="lora-ft", order="3", backbone=BACKBONE, seed=2, preset="quick", output=str(tmp_path / "r"),
                    accelerator="cpu", devices=2, strategy="ddp", logger="none", eval_mode="lower",
                    overrides={"lr": 1e-4, "lora_targets": "q_proj", "eval_max_new_tokens": None},
                    scorer_variants={"chart": "exact"})
    argv = run_command(cfg)
    assert argv is not None and argv[0] == "run" and "--resume" in argv
    assert run_config(build_parser().parse_args(argv)) == dataclasses.replace(cfg, resume=True)
    # a run no command line expresses (tuning stream, a ceiling's single task) gets no made-up command
    assert run_command(dataclasses.replace(cfg, data_stream="tuning")) is None
    assert run_command(dataclasses.replace(cfg, task_subset=["chart"])) is None


def test_bad_input_through_the_library_is_a_user_error_and_writes_nothing(tmp_path: Path) -> None:
    import mcit_bench
    from mcit_bench.errors import UserError

    with pytest.raises(UserError, match="unknown key"):
        mcit_bench.run(RunConfig(method="lora-ft", backbone=BACKBONE, overrides={"no_such_key": 1},
                                 output=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_worker_refuses_a_call_without_its_config_file(capsys) -> None:
    from mcit_bench.worker import main

    assert main([]) == 2 and "mcit_bench.worker CONFIG.json" in capsys.readouterr().err


class _FakeWorker:
    """Stands for a worker process: records how it was started; ``code`` is its exit status (None: running)."""

    started: list["_FakeWorker"] = []

    def __init__(self, argv: list[str], env: dict[str, str], stdout: object = None) -> None:
        self.argv, self.env, self.pid, self.code = argv, env, 4242, None
        self.config = json.loads(Path(argv[-1]).read_text())  # what the worker would read at its start
        _FakeWorker.started.append(self)

    def poll(self) -> int | None:
        return self.code

    def kill(self) -> None:
        self.code = -9

    def wait(self, timeout: float | None = None) -> int:  # subprocess.Popen.wait
        return self.code or 0


def test_launch_starts_workers_from_the_config_not_a_command_line(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import sys

    from mcit_bench import distributed

    monkeypatch.setattr(distributed.subprocess, "Popen", _FakeWorker)
    monkeypatch.setattr(distributed, "WATCH_GRACE_S", 1e9)  # the watchdog must not end the test process
    saved = dict(os.environ)
    cfg = RunConfig(method="lora-ft", backbone=BACKBONE, devices=3, strategy="ddp", overrides={"lr": 1e-4},
                    output=str(tmp_path / "run"))
    _FakeWorker.started.clear()
    try:
        launcher = distributed.launch(distributed.Ranks(3, 0, 0, launcher=True), cfg, "the hint")
        workers = list(_FakeWorker.started)
        assert [w.argv for w in workers] == [[sys.executable, "-m", "mcit_bench.worker", workers[0].argv[-1]]] * 2
        assert all(w.config == cfg.to_dict() for w in workers)
        assert [(w.env["RANK"], w.env["LOCAL_RANK"], w.env[distributed.WORKER_ENV]) for w in workers] == \
            [("1", "1", "1"), ("2", "2", "1")]
        assert launcher.failure() is None
        workers[1].code = -9
        assert launcher.failure() == ("rank 2 (pid 4242) stopped with signal SIGKILL; the run stops here. Every "
                                      "completed cell is on disk: the hint.")
        launcher.stop()
        assert not Path(workers[0].argv[-1]).exists()  # the configuration file goes with the workers
    finally:
        os.environ.clear()
        os.environ.update(saved)
