"""Test set-up: offline, caches in a temp folder, the shipped tiny backbone (it has learned answers)."""
from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

import pytest

_CACHE = Path(tempfile.gettempdir()) / "mcit-bench-test-cache"
os.environ.setdefault("MCIT_BENCH_CACHE", str(_CACHE))
os.environ.setdefault("HF_HOME", str(_CACHE / "hf"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BACKBONE = "tiny-llava"


@pytest.fixture(scope="session")
def tiny_backbone() -> Path:
    """Path of the shipped tiny backbone (read-only; a learned model, so matrices and predictions are not empty)."""
    from mcit_bench.backbones import backbone_path

    return backbone_path(BACKBONE, progress=False)


def quick_args(tmp_path: Path, method: str = "lora-ft", order: str = "3", *extra: str) -> list[str]:
    return ["run", "--method", method, "--order", order, "--backbone", BACKBONE, "--preset", "quick",
            "--output", str(tmp_path / "run"), "--quiet", "--logger", "none", *extra]


def assert_every_file_parses(folder: Path, temp_files_allowed: bool = False) -> None:
    """No torn file: every JSON, JSONL and CSV under ``folder`` parses; no temporary file is left behind
    unless ``temp_files_allowed`` (a process killed mid-write may leave one; it is never read)."""
    for path in folder.rglob("*"):
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text().splitlines()]
        elif path.suffix == ".csv":
            rows = list(csv.reader(path.read_text().splitlines()))
            assert rows and all(len(r) == len(rows[0]) for r in rows), path
        assert temp_files_allowed or not path.name.endswith(".tmp"), path


def stop_after_stage(monkeypatch: pytest.MonkeyPatch, stage: int | None) -> None:
    """Simulated preemption: the next runs of this process stop hard (SystemExit) once ``stage`` is on disk
    (``runner.AFTER_STAGE_HOOKS``); None: no more stops."""
    from mcit_bench.engine import runner

    def stop(at: int, summary: dict) -> None:
        if at == stage:
            raise SystemExit(f"mcit-bench: stopped after stage {stage} (a test's preemption)")

    monkeypatch.setattr(runner, "AFTER_STAGE_HOOKS", [] if stage is None else [stop])


def assert_learned(run: Path, min_tasks: int = 2) -> None:
    """The run's matrix is non-zero on at least ``min_tasks`` tasks and at least half its predictions are
    not empty: an equality of such runs (resume, ranks, determinism) would fail for a broken run."""
    from mcit_bench.matrix_io import read_matrix_csv

    R, names = read_matrix_csv(run / "accuracy.csv")
    scored = [n for j, n in enumerate(names) if (R[:, j] > 0).any()]
    assert len(scored) >= min_tasks, f"{run}: non-zero cells on {scored} only"
    texts = [json.loads(line)["text"] for p in (run / "predictions").rglob("*.jsonl")
             for line in p.read_text().splitlines()]
    assert texts and sum(bool(t.strip()) for t in texts) >= len(texts) // 2, f"{run}: predictions mostly empty"


# Tests that take more than a few seconds on 2 cores (end-to-end runs and resumes, several processes,
# kills, studies): `pytest -m "not slow"` leaves them out. One quick run (test_run's first test) stays in
# the fast subset, so that it still reaches the runner, the Lightning module, evaluation and the plots.
SLOW = {
    "test_backbone_families.py::test_lm_loss_equals_cross_entropy_of_the_native_logits",
    "test_backbone_families.py::test_quick_continual_run_per_family",
    "test_builtin_world.py::test_clip_text_tower_pools_at_the_eos_token",
    "test_caption_metrics.py::test_caption_auto_uses_coco_with_meteor_and_never_spice",
    "test_ceiling.py::test_a_tuned_ceiling_feeds_the_tuned_runs_row",
    "test_ceiling.py::test_ceiling_trains_each_task_alone_resumes_and_feeds_the_leaderboard",
    "test_coin.py::test_quick_run_with_text_only_questions",
    "test_console.py::test_console_shows_no_library_banners_tips_or_warnings",
    "test_console.py::test_quiet_prints_only_the_summary",
    "test_distributed.py::test_killed_rank_stops_the_run_and_resume_completes_it",
    "test_strategy_hooks.py::test_replay_buffer_reaches_the_training_batches",
    "test_distributed.py::test_signal_to_a_two_rank_run_stops_every_rank_and_resume_completes_it",
    "test_distributed.py::test_state_checksum_catches_a_rank_that_differs",
    "test_distributed.py::test_statistics_on_two_ranks_equal_one_process",
    "test_distributed.py::test_sweep_passes_the_process_flags_through",
    "test_distributed.py::test_two_rank_gradient_equals_the_one_process_gradient",
    "test_distributed.py::test_two_ranks_give_the_single_process_predictions_and_metrics",
    "test_distributed.py::test_two_rank_sweep_item_runs_through_the_library_and_equals_the_two_rank_run",
    "test_faults.py::test_checkpoint_carrying_a_pickle_is_refused_and_never_run",
    "test_faults.py::test_damaged_state_or_checkpoint_is_refused_by_name",
    "test_faults.py::test_divergence_stops_the_run_and_resume_with_a_smaller_lr_continues",
    "test_faults.py::test_full_disk_stops_with_the_path_and_damages_nothing",
    "test_faults.py::test_resume_refuses_changes_that_make_another_experiment",
    "test_faults.py::test_second_writer_is_refused_and_a_dead_holders_lock_is_taken_over",
    "test_fwd_prompt.py::test_controls_without_projection_leak_into_memory",
    "test_fwd_prompt.py::test_default_is_the_literal_formula_and_keeps_room",
    "test_fwd_prompt.py::test_default_update_avoids_memory_and_stays_in_pretrained_space",
    "test_fwd_prompt.py::test_first_task_trains_unprojected",
    "test_fwd_prompt.py::test_projected_gradient_alone_suffices_with_sgd",
    "test_fwd_prompt.py::test_projection_holds_through_the_lightning_loop",
    "test_fwd_prompt.py::test_quick_run_reports_analysis_and_resumes_identically",
    "test_fwd_prompt.py::test_random_subspace_control_has_the_default_dimension",
    "test_fwd_prompt.py::test_residual_and_additive_modes_avoid_memory_only",
    "test_kill.py::test_kill_anywhere_then_resume_gives_the_uninterrupted_results",
    "test_kill.py::test_killed_sweep_resumes_to_the_uninterrupted_results",
    "test_many.py::test_merge_streamed_by_layer_groups_equals_one_pass",
    "test_many.py::test_quick_run_and_resume",
    "test_many.py::test_strategy_merge_state_and_resume",
    "test_modalprompt.py::test_alignment_losses_train_the_transform",
    "test_modalprompt.py::test_inference_prompt_length_is_bounded",
    "test_modalprompt.py::test_quick_run_resume_and_report",
    "test_multiturn.py::test_three_turn_conversation_labels_exactly_the_three_answers",
    "test_plugins.py::test_entry_point_plugin_runs_through_cli",
    "test_readme_leaderboard.py::test_the_tool_rewrites_only_the_marked_table",
    "test_run.py::test_resume_after_interruption_gives_identical_matrix",
    "test_run.py::test_same_seed_same_matrix",
    "test_run.py::test_zero_shot_rows_equal_and_joint_has_two_rows",
    "test_shipped_backbone.py::test_fresh_run_of_builtin_uses_shipped_weights_without_building",
    "test_stock_llava.py::test_stock_llava_checkpoint_runs",
    "test_sweep.py::test_interrupted_sweep_resumes_and_never_reruns_finished_work",
    "test_training_step.py::test_logging_only_the_written_steps_writes_what_logging_every_step_wrote",
    "test_training_step.py::test_speed_benchmark_runs_and_splits_a_run",
    "test_tune.py::test_a_clearly_worse_trial_is_pruned_after_its_first_task",
    "test_tune.py::test_by_default_no_trial_is_pruned_after_the_first_task",
    "test_tune.py::test_study_runs_is_interrupted_and_resumes_with_its_stored_trials",
    "test_ucit.py::test_caption_task_uses_the_seven_metric_coco_score_when_available",
    "test_ucit.py::test_quick_run_through_the_native_files",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.split("[")[0].removeprefix("tests/") in SLOW:
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """With a marker selection (the fast subset), name the modules of mcit_bench/ no selected test imported."""
    import pkgutil
    import sys

    import mcit_bench

    if not config.getoption("markexpr"):
        return
    every = {m.name for m in pkgutil.walk_packages(mcit_bench.__path__, "mcit_bench.")}
    missed = sorted(name for name in every if name not in sys.modules)
    terminalreporter.write_line(f"mcit_bench modules imported by the selected tests: {len(every) - len(missed)} "
                                f"of {len(every)}" + (f"; not imported: {', '.join(missed)}" if missed else ""))
