"""mcit-bench tune: a tiny study runs, prunes and resumes; search spaces are validated; the tuned preset is applied."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

import mcit_bench.engine.runner as runner  # noqa: E402
from mcit_bench.cli import main  # noqa: E402
from mcit_bench.config import RunConfig  # noqa: E402
from mcit_bench.errors import UserError  # noqa: E402
from mcit_bench.registry import get_method, method_defaults  # noqa: E402
from mcit_bench.tuning.search_space import search_space  # noqa: E402
from mcit_bench.tuning.tuned import write_tuned  # noqa: E402

from conftest import BACKBONE, stop_after_stage  # noqa: E402

TINY = ["--preset", "quick", "--backbone", BACKBONE, "--set", "train_size=8", "--set", "test_size=2",
        "--set", "chance_shifts=0"]


def tune_args(tmp_path: Path, *extra: str) -> list[str]:
    order = tmp_path / "short.yaml"
    order.write_text("tasks: [styles, chart]\n")  # two tasks: one intermediate report, then the final avg
    return ["tune", "--method", "lora-ft", "--order", str(order), "--root", str(tmp_path / "tuning"), *TINY, *extra]


def load(tmp_path: Path) -> optuna.Study:
    db = tmp_path / "tuning" / "synthetic" / "lora-ft.db"
    return optuna.load_study(study_name="synthetic/lora-ft", storage=f"sqlite:///{db}")


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials()]


def test_study_runs_is_interrupted_and_resumes_with_its_stored_trials(tmp_path: Path, tiny_backbone: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real_execute, calls = runner.execute, []

    def stop_in_second_trial(plan, progress=True, on_stage=None):
        calls.append(plan.run_dir)
        if len(calls) == 2:  # preempted once the second trial's first task is on disk
            stop_after_stage(monkeypatch, 1)
        return real_execute(plan, progress=progress, on_stage=on_stage)

    monkeypatch.setattr(runner, "execute", stop_in_second_trial)
    with pytest.raises(SystemExit):
        main(tune_args(tmp_path, "--trials", "3"))
    study = load(tmp_path)
    assert states(study) == [TrialState.COMPLETE, TrialState.RUNNING]
    cut = study.trials[1]
    cut_dir = Path(cut.user_attrs["run_dir"])
    assert cut_dir == calls[1] and json.loads((cut_dir / "state.json").read_text())["trained"] == [1]
    first_checkpoint = (cut_dir / "checkpoints" / "stage1.safetensors").stat().st_mtime_ns

    stop_after_stage(monkeypatch, None)
    monkeypatch.setattr(runner, "execute", real_execute)
    assert main(tune_args(tmp_path, "--trials", "3")) == 0
    study = load(tmp_path)
    # the cut trial is marked failed and retried with the same values: its run continues where it stopped
    assert states(study) == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    retried = study.trials[2]
    assert retried.params == cut.params and retried.user_attrs["continues_trial"] == 1
    assert Path(retried.user_attrs["run_dir"]) == cut_dir
    assert (cut_dir / "checkpoints" / "stage1.safetensors").stat().st_mtime_ns == first_checkpoint  # not retrained
    summary = json.loads((cut_dir / "summary.json").read_text())
    assert summary["complete"] and summary["data_stream"] == "tuning" and retried.value == summary["avg"]
    config = yaml.safe_load((cut_dir / "config.yaml").read_text())
    assert config["hparams"]["lr"] == cut.params["lr"] and config["hparams"]["steps_per_task"] == 2  # quick 4 halved

    tuned = yaml.safe_load((tmp_path / "tuning" / "tuned.yaml").read_text())["synthetic"]["lora-ft"]
    assert tuned["values"] == study.best_params
    prov = tuned["provenance"]
    assert prov["trials"] == 3 and prov["complete"] == 3 and prov["study"].endswith("lora-ft.db")
    assert "data seed 1" in prov["stream"] and "steps_per_task=2" in prov["budget"]
    assert prov["objective"].startswith("final avg") and prov["best_value"] == pytest.approx(study.best_value, abs=1e-4)
    report = (tmp_path / "tuning" / "report.md").read_text()
    # the cut trial is counted as interrupted (not failed); the trial continuing it carries both attempts' time
    assert "| lora-ft | avg | 3 (3 / 0 / 0 / 1) |" in report and "IQR" in report
    assert prov["failed"] == 0 and prov["interrupted_and_continued"] == 1
    both = cut.user_attrs["seconds"] + retried.user_attrs["seconds"]
    row = next(line for line in report.splitlines() if line.startswith("| 2 | "))
    assert row.endswith(f"| complete | {retried.value:.2f} | {both:.0f} |")

    # the same command on a finished study runs nothing more; another budget is refused, before any trial
    assert main(tune_args(tmp_path, "--trials", "3")) == 0
    assert len(load(tmp_path).trials) == 4
    assert main(tune_args(tmp_path, "--trials", "3", "--budget", "full")) == 2


def test_a_clearly_worse_trial_is_pruned_after_its_first_task(tmp_path: Path, tiny_backbone: Path) -> None:
    first = ("--startup-trials", "2", "--prune-from-task", "1")
    assert main(tune_args(tmp_path, "--trials", "1", *first)) == 0
    study = load(tmp_path)
    real = study.trials[0]
    assert real.state == TrialState.COMPLETE and set(real.intermediate_values) == {1}  # the running avg after task 1
    # Two stored trials whose running avg (200) no real run reaches (scores are at most 100): the median
    # pruner, past its 2 start-up trials, must stop the next trial after its first task.
    for lr in (1e-3, 2e-3):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": lr, "lora_r": 16}, distributions=real.distributions, value=200.0,
            intermediate_values={1: 200.0}))
    assert main(tune_args(tmp_path, "--trials", "4", *first)) == 0
    study = load(tmp_path)
    pruned = study.trials[3]
    assert pruned.state == TrialState.PRUNED and set(pruned.intermediate_values) == {1}
    state = json.loads((Path(pruned.user_attrs["run_dir"]) / "state.json").read_text())
    assert state["trained"] == [1] and state["complete"] is False  # the second task was never trained
    report = (tmp_path / "tuning" / "report.md").read_text()
    assert "| lora-ft | avg | 4 (3 / 1 / 0 / 0) |" in report
    row = next(line for line in report.splitlines() if line.startswith("| 3 | "))
    assert f"| pruned after task 1 | {pruned.intermediate_values[1]:.2f} |" in row
    # the study keeps its pruning rule: the default (from task 2) on it is refused, before any trial
    assert main(tune_args(tmp_path, "--trials", "5", "--startup-trials", "2")) == 2
    assert len(load(tmp_path).trials) == 4


def test_by_default_no_trial_is_pruned_after_the_first_task(tmp_path: Path, tiny_backbone: Path) -> None:
    # After task 1 the running avg is one score with no forgetting in it: the default prunes from task 2 on.
    assert main(tune_args(tmp_path, "--trials", "1", "--startup-trials", "2")) == 0
    study = load(tmp_path)
    real = study.trials[0]
    for lr in (1e-3, 2e-3):  # running avg 200 after task 1 (unreachable), nothing stored for later tasks
        study.add_trial(optuna.trial.create_trial(
            params={"lr": lr, "lora_r": 16}, distributions=real.distributions, value=200.0,
            intermediate_values={1: 200.0}))
    assert main(tune_args(tmp_path, "--trials", "4", "--startup-trials", "2")) == 0
    kept = load(tmp_path).trials[3]
    assert kept.state == TrialState.COMPLETE and set(kept.intermediate_values) == set(real.intermediate_values)


def _space_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "lora_ft.yaml"
    path.write_text(text)
    monkeypatch.setattr("mcit_bench.tuning.search_space.yaml_path", lambda cls: path)
    return path


@pytest.mark.parametrize("entry, message", [
    ("nope: {type: float, low: 0.1, high: 1.0}", "field 'search_space.nope': unknown key 'nope'"),
    ("steps_per_task: {type: int, low: 10, high: 20}", "'steps_per_task' is part of the budget"),
    ("lr: {type: real, low: 0.1, high: 1.0}", "field 'search_space.lr': 'type' must be one of float, int, categorical"),
    ("lr: {type: float, low: 0.1}", "field 'search_space.lr': 'high' is required"),
    ("lr: {type: float, low: 1.0, high: 0.1}", "'low' (1) must be below 'high' (0.1)"),
    ("lr: {type: float, low: 0, high: 0.1, log: true}", "'low' must be > 0 with log: true"),
    ("lr: {type: float, low: x, high: 0.1}", "'low' must be a number, got 'x'"),
    ("lora_r: {type: int, low: 2.5, high: 8}", "must be integers for type int"),
    ("lora_r: {type: categorical, choices: []}", "'choices' must be a non-empty list"),
    ("lora_r: {type: categorical, choices: [4], low: 1}", "unknown field(s) low for type categorical"),
    ("lr: 0.1", "field 'search_space.lr': expected a mapping"),
])
def test_search_space_errors_name_file_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                                 entry: str, message: str) -> None:
    path = _space_yaml(tmp_path, monkeypatch, "lora_r: 4\nsearch_space:\n  " + entry + "\n")
    assert main(["tune", "--method", "lora-ft", "--root", str(tmp_path / "tuning")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and message in err
    assert not (tmp_path / "tuning").exists()


def test_search_space_is_not_a_hyper_parameter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _space_yaml(tmp_path, monkeypatch, "lora_r: 4\nsearch_space:\n  lr: {type: float, low: 1e-4, high: 1.0e-2, "
                                       "log: true}\n  lora_r: {type: int, low: 4, high: 32, step: 4}\n")
    cls = get_method("lora-ft")
    defaults = method_defaults(cls)
    assert defaults["lora_r"] == 4 and "search_space" not in defaults  # plain keys still override the class
    space = search_space(cls, {"lr": 1e-3, **defaults})
    assert space["lr"].low == 1e-4 and space["lr"].log  # `1e-4` (a YAML 1.1 string) read as the number
    assert space["lora_r"].type == "int" and space["lora_r"].step == 4
    monkeypatch.undo()
    # the shipped declarations: every trainable method has one, zero-shot none
    for name in ("lora-ft", "joint", "fwd-prompt", "many", "modalprompt"):
        assert "lr" in search_space(get_method(name), {"lr": 1e-3, **method_defaults(get_method(name))})
    assert search_space(get_method("zero-shot"), {}) == {}


def test_tuned_preset_is_applied_and_recorded(tmp_path: Path, tiny_backbone: Path, capsys) -> None:
    tuned = tmp_path / "tuned.yaml"
    write_tuned(tuned, "synthetic", "lora-ft", {"lr": 0.0005, "lora_r": 8},
                {"trials": 20, "study": "results/tuning/synthetic/lora-ft.db"})
    order = tmp_path / "short.yaml"
    order.write_text("tasks: [styles]\n")
    args = ["run", "--method", "lora-ft", "--order", str(order), "--backbone", BACKBONE, "--preset", "tuned", "--tuned",
            str(tuned), "--quiet", "--logger", "none", "--output", str(tmp_path / "run")]
    budget = ["--set", "steps_per_task=2", "--set", "train_size=8", "--set", "test_size=2", "--set", "batch_size=4",
              "--set", "chance_shifts=0"]
    assert main(args + budget) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["preset"] == "tuned" and summary["preset_values"] == {"lr": 0.0005, "lora_r": 8}
    assert summary["tuned"]["file"] == str(tuned) and summary["tuned"]["provenance"]["trials"] == 20
    hparams = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["hparams"]
    assert hparams["lr"] == 0.0005 and hparams["lora_r"] == 8 and hparams["lora_alpha"] == 32
    assert summary["strategy"]["lora_r"] == 8  # the model was built with the tuned rank

    # --set still wins over the preset; a method with a search space but no entry, or an unknown key: exit 2
    cfg = RunConfig(method="lora-ft", preset="tuned", tuned_file=str(tuned), output=str(tmp_path / "x"),
                    overrides={"lr": 0.001})
    assert runner.plan_run(cfg).hparams["lr"] == 0.001
    capsys.readouterr()
    assert main([*args[:2], "many", *args[3:-1], str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tuned}: no tuned values for method 'many' on benchmark 'synthetic'" in err
    # zero-shot declares no search space: nothing to tune, its defaults, said in summary.json's provenance
    plan = runner.plan_run(RunConfig(method="zero-shot", preset="tuned", tuned_file=str(tuned), output=str(tmp_path / "z")))
    assert plan.preset_values == {} and "nothing to tune" in plan.tuned["provenance"]["note"]
    write_tuned(tuned, "synthetic", "many", {"lr": 0.001, "bogus": 1}, {})
    with pytest.raises(UserError, match=r"field 'synthetic.many.values': unknown key\(s\) bogus"):
        runner.plan_run(RunConfig(method="many", preset="tuned", tuned_file=str(tuned), output=str(tmp_path / "m")))


def test_reduced_budget_and_objective_per_method() -> None:
    from mcit_bench.tuning.study import budget_overrides, objective_of

    assert budget_overrides("reduced", {"steps_per_task": 550, "test_size": 100}) == {"steps_per_task": 275,
                                                                                     "test_size": 50}
    assert budget_overrides("reduced", {"steps_per_task": 550, "test_size": None}) == {"steps_per_task": 275,
                                                                                      "test_size": 200}
    assert budget_overrides("full", {"steps_per_task": 550, "test_size": 100}) == {}
    with pytest.raises(UserError, match="--budget 'tiny'"):
        budget_overrides("tiny", {})
    # joint has no intermediate rows, so its avg is undefined: it is tuned on last
    assert objective_of(get_method("joint")) == "last" and objective_of(get_method("lora-ft")) == "avg"


def test_best_values_at_the_edge_of_their_range_are_flagged() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from mcit_bench.tuning.report import params_at_edge, range_position

    assert range_position(1e-3, 1e-4, 1e-2, log=True) == pytest.approx(0.5)
    assert range_position(0.25, 0.0, 1.0, log=False) == pytest.approx(0.25)
    dists = {"lr": FloatDistribution(3e-4, 1e-2, log=True), "gamma": FloatDistribution(0.0, 1.0),
             "length": IntDistribution(2, 10), "r": CategoricalDistribution([8, 32])}
    # lr 3.65e-4 is 5.6% up a log range (flagged), gamma 0.5 and length 6 in the middle, r categorical (never)
    trial = optuna.trial.create_trial(params={"lr": 3.65e-4, "gamma": 0.5, "length": 6, "r": 8},
                                      distributions=dists, value=1.0)
    assert params_at_edge(trial) == ["lr (low end of [0.0003, 0.01])"]
    # 1e-3 is 37% up that log range (a linear reading would say 2.3%: flagged wrongly); length 10 is the top
    trial = optuna.trial.create_trial(params={"lr": 1e-3, "gamma": 0.95, "length": 10, "r": 32},
                                      distributions=dists, value=1.0)
    assert params_at_edge(trial) == ["gamma (high end of [0, 1])", "length (high end of [2, 10])"]
