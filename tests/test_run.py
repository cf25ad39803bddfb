"""End-to-end runs on the tiny backbone: files, determinism, resume."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mcit_bench.rundir.checkpoints import load_checkpoint
from mcit_bench.cli import main
from mcit_bench.matrix_io import read_matrix_csv

from conftest import assert_learned, quick_args, stop_after_stage


def test_quick_run_writes_everything(tmp_path: Path, tiny_backbone: Path) -> None:
    assert main(quick_args(tmp_path, "lora-ft", "3")) == 0
    run = tmp_path / "run"
    R, names = read_matrix_csv(run / "accuracy.csv")
    assert names == ["icons", "scene_caption", "chart", "count_math", "styles", "degraded_caption"]  # order 3
    assert R.shape == (7, 6) and not np.isnan(R).any()  # full matrix: future tasks evaluated too
    assert_learned(run, min_tasks=4)  # the quick preset's matrices mean something (they are not all zero)
    summary = json.loads((run / "summary.json").read_text())
    for key in ("avg", "last", "mft", "bwt", "fgt", "fwd", "curves", "scorers", "timings", "environment"):
        assert key in summary
    assert summary["complete"] is True and summary["trainable_parameters"] > 0
    zero = summary["zero_shot"]  # 8 test records: 7 shifts, so the p-value is at least 1/8 and never "above"
    assert set(zero) == set(names) and all(z["p_value"] >= 1 / 8 and not z["above_chance"] for z in zero.values())
    assert zero["styles"]["score"] == R[0, names.index("styles")] and zero["chart"]["chance"] == 25.0
    assert (run / "fgt.csv").is_file() and (run / "fwd.csv").is_file() and (run / "config.yaml").is_file()
    assert "output" not in yaml.safe_load((run / "config.yaml").read_text())  # no path of this machine in it
    preds = (run / "predictions" / "stage6" / "styles.jsonl").read_text().splitlines()
    assert len(preds) == 8 and set(json.loads(preds[0])) == {"uid", "text"}
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == \
        sorted(f"stage{t}.{ext}" for t in range(1, 7) for ext in ("json", "safetensors"))
    # the completed run's own figures (matplotlib is in the test extra)
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["curves.png", "heatmap.png"]
    assert (run / "plots" / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_matrix(tmp_path: Path, tiny_backbone: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(quick_args(a, "lora-ft", "2")) == 0
    assert main(quick_args(b, "lora-ft", "2")) == 0
    assert_learned(a / "run")
    assert (a / "run" / "accuracy.csv").read_text() == (b / "run" / "accuracy.csv").read_text()
    ck_a, ck_b = load_checkpoint(a / "run", 6)["tensors"], load_checkpoint(b / "run", 6)["tensors"]
    assert all(ck_a[k].equal(ck_b[k]) for k in ck_a)


def test_resume_after_interruption_gives_identical_matrix(tmp_path: Path, tiny_backbone: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(quick_args(full, "lora-ft", "1")) == 0
    assert_learned(full / "run")
    stop_after_stage(monkeypatch, 2)
    with pytest.raises(SystemExit):
        main(quick_args(cut, "lora-ft", "1"))
    run = cut / "run"
    state = json.loads((run / "state.json").read_text())
    assert state["trained"] == [1, 2] and not state["complete"]
    R_partial, _ = read_matrix_csv(run / "accuracy.csv")
    assert np.isnan(R_partial[3:]).all() and not np.isnan(R_partial[:3]).any()
    kept = {p: p.stat().st_mtime_ns for p in [run / "checkpoints" / "stage2.safetensors", run / "predictions" / "stage2" / "chart.jsonl"]}
    stop_after_stage(monkeypatch, None)
    assert main(quick_args(cut, "lora-ft", "1", "--resume")) == 0
    assert (run / "accuracy.csv").read_text() == (full / "run" / "accuracy.csv").read_text()
    # finished work is not redone
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())


def test_existing_run_needs_resume(tmp_path: Path, tiny_backbone: Path, capsys) -> None:
    assert main(quick_args(tmp_path, "zero-shot", "1")) == 0
    assert main(quick_args(tmp_path, "zero-shot", "1")) == 2
    assert "--resume" in capsys.readouterr().err


def test_zero_shot_rows_equal_and_joint_has_two_rows(tmp_path: Path, tiny_backbone: Path) -> None:
    assert main(quick_args(tmp_path / "z", "zero-shot", "1")) == 0
    R, _ = read_matrix_csv(tmp_path / "z" / "run" / "accuracy.csv")
    assert (R == R[0]).all()
    assert main(quick_args(tmp_path / "j", "joint", "1")) == 0
    R, _ = read_matrix_csv(tmp_path / "j" / "run" / "accuracy.csv")
    assert not np.isnan(R[0]).any() and not np.isnan(R[6]).any() and np.isnan(R[1:6]).all()
    summary = json.loads((tmp_path / "j" / "run" / "summary.json").read_text())
    assert summary["last"] is not None and summary["avg"] is None and summary["fwd"] is None


def test_eval_lower_leaves_upper_triangle_missing(tmp_path: Path, tiny_backbone: Path) -> None:
    assert main(quick_args(tmp_path, "lora-ft", "1", "--eval", "lower")) == 0
    R, _ = read_matrix_csv(tmp_path / "run" / "accuracy.csv")
    assert np.isnan(R[1, 1]) and not np.isnan(R[1, 0]) and not np.isnan(R[0]).any()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["fwd"] is None and summary["last"] is not None


def test_every_method_starts_from_the_untouched_backbone(tmp_path: Path, tiny_backbone: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage 0 is the zero-shot row of the backbone itself: a method's untrained additions (Fwd-Prompt's
    prompt pool, ModalPrompt's or MAny's structures) must not reach the language model. The tiny
    backbone's answers hardly depend on their inputs, so the test compares what the LM is given."""
    from mcit_bench.backbones.llava import Backbone
    from mcit_bench.registry import list_methods

    seen: list[tuple] = []
    original = Backbone.generate

    def recording(self, inputs_embeds, attention_mask, max_new_tokens, position_ids=None):
        seen.append((tuple(inputs_embeds.shape), round(float(inputs_embeds.double().sum()), 6)))
        return original(self, inputs_embeds, attention_mask, max_new_tokens, position_ids=position_ids)

    monkeypatch.setattr(Backbone, "generate", recording)
    stop_after_stage(monkeypatch, 0)
    inputs = {}
    for method in list_methods():
        seen.clear()
        with pytest.raises(SystemExit):
            main(quick_args(tmp_path / method, method, "1"))
        inputs[method] = list(seen)
    assert {"fwd-prompt", "modalprompt", "many", "lora-ft"} <= set(inputs) and len(inputs["zero-shot"]) == 6
    assert all(x == inputs["zero-shot"] for x in inputs.values()), [m for m, x in inputs.items() if x != inputs["zero-shot"]]
