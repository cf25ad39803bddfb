"""CoIN from its native release layouts: the extra ground-truth files, text-only ScienceQA questions, the
scorers' fields, validation failures, conversion, CoIN's own task order, and a quick continual run."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mcit_bench.benchmark import load_benchmark
from mcit_bench.cli import main
from mcit_bench.config import load_order
from mcit_bench.errors import UserError

from conftest import BACKBONE
from native_fixtures import COIN_TASKS, coin_task_dir, make_coin


@pytest.fixture()
def coin(tmp_path: Path) -> Path:
    root, _ = make_coin(tmp_path / "CoIN", "checkout")
    return root


def _load(root: Path, **options):
    return load_benchmark("coin", data_root=str(root), **options)


@pytest.mark.parametrize("layout", ["checkout", "instructions"])
def test_native_layouts_and_ground_truth(tmp_path: Path, layout: str) -> None:
    root, images = make_coin(tmp_path / "CoIN", layout)
    bench = _load(root, image_root=str(images) if layout == "instructions" else None)  # strict counts hold here
    assert bench.task_names == list(COIN_TASKS) and bench.template == "vicuna_v1"
    assert {t.name: (t.scorer, t.scorer_variant) for t in bench.tasks} == {
        "ScienceQA": ("scienceqa", "coin"), "TextVQA": ("vqa_soft", "textvqa"),
        "ImageNet": ("imagenet_substring", "coin"), "GQA": ("gqa", "coin"), "VizWiz": ("vqa_exact", "coin"),
        "Grounding": ("grounding_iou", "coin_compat"), "VQAv2": ("vqa_exact", "coin"), "OCR-VQA": ("ocrvqa", "coin")}
    sqa = bench.test_split("ScienceQA").to_list()
    assert [r["target"] for r in sqa] == ["A", "B", "A"]  # problems.json answer index -> letter
    assert sqa[1]["choices"] == ["red", "blue", "green"] and sqa[1]["image"] is None  # text-only question
    assert bench.train_split("ScienceQA")[1]["image"] is None
    textvqa = bench.test_split("TextVQA")[0]
    assert len(textvqa["references"]) == 10 and textvqa["references"].count("answer 0") == 7
    assert [r["target"] for r in bench.test_split("GQA").remove_columns("image").to_list()] == \
        [f"gqa answer {i}" for i in range(3)]
    box = bench.test_split("Grounding")[1]
    assert box["bbox"] == pytest.approx([0.11, 0.2, 0.5, 0.61]) and box["image_size"] == [21, 16]
    assert bench.test_split("OCR-VQA")[0]["uid"] == "coin/OCR-VQA/test/800"


def test_scorers_read_the_served_fields(coin: Path) -> None:
    from mcit_bench.scorers import get_scorer

    bench = _load(coin)

    def score(task: str, preds: list[str]) -> float:
        spec = bench.task(task)
        records = bench.test_split(task).remove_columns("image").to_list()
        return get_scorer(spec.scorer, spec.scorer_variant).score(preds, records).score

    assert score("ScienceQA", ["A", "The answer is B.", "C"]) == pytest.approx(200 / 3)
    assert score("TextVQA", ["answer 0", "other", "nothing"]) == pytest.approx(100 * (1 + 0.9) / 3)
    assert score("Grounding", ["[0.10, 0.2, 0.5, 0.600]", "[0.11, 0.2, 0.5, 0.610]", "no box"]) == pytest.approx(200 / 3)
    assert score("GQA", ["gqa answer 0.", "GQA answer 1", "x"]) == pytest.approx(200 / 3)


def test_coin_has_its_own_order_and_refuses_the_six_task_ones(coin: Path) -> None:
    names = _load(coin).task_names
    assert load_order("1", names, "coin") == list(COIN_TASKS)
    with pytest.raises(UserError, match=r"no task_orders/coin/order2\.yaml; known: 1"):
        load_order("2", names, "coin")


def _set_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("breakage,message", [
    (lambda r: (r / "cl_dataset" / "ScienceQA" / "problems.json").unlink(),
     r"CoIN ScienceQA: ground-truth file problems\.json not found"),
    (lambda r: _set_json(r / "cl_dataset" / "ScienceQA" / "pid_splits.json", lambda d: d["test"].append("99")),
     r"ScienceQA/test\.json: 3 questions, but .*pid_splits\.json lists 4 test problems"),
    (lambda r: _set_json(r / "cl_dataset" / "TextVQA" / "TextVQA_0.5.1_val.json", lambda d: d["data"].pop()),
     r"TextVQA_0\.5\.1_val\.json: no question_id 202 \(test record 2 of .*TextVQA/val\.json\)"),
    (lambda r: _set_json(r / "cl_dataset" / "GQA" / "testdev_balanced_questions.json", lambda d: d.pop("401")),
     r"testdev_balanced_questions\.json: no question '401'"),
    (lambda r: _set_json(coin_task_dir(r, "VQAv2") / "val.json", lambda d: d[1].update(question_id=700)),
     r"VQAv2/val\.json: duplicate question_id '700'"),
    (lambda r: (r / "cl_dataset" / "OCR-VQA" / "test" / "2.jpg").unlink(),
     r"OCRVQA/test\.json: record 2: image 'OCR-VQA/test/2\.jpg' not found"),
    (lambda r: _set_json(coin_task_dir(r, "Grounding") / "test.json", lambda d: d[0].update(answer_bbox="[0.1, 0.2]")),
     r"Grounding/test\.json: record 0: 'answer_bbox' '\[0\.1, 0\.2\]' is not \[x1, y1, x2, y2\]"),
    (lambda r: _set_json(coin_task_dir(r, "ImageNet") / "train.json", lambda d: d[0].pop("image")),
     r"ImageNet/train\.json: record 0 has no 'image'"),
    (lambda r: (coin_task_dir(r, "VizWiz") / "val.json").unlink(),
     r"VizWiz: no test file \(looked for val\.json, test\.json\)"),
    (lambda r: (r / "cl_dataset" / "TextVQA" / "train" / "1.jpg").write_bytes(b""),
     r"cl_dataset/TextVQA/train/1\.jpg: not a readable image \(empty file; record 1 of .*TextVQA/train\.json\)"),
    (lambda r: (r / "cl_dataset" / "Grounding" / "test" / "0.jpg").write_bytes(b"\xff\xd8 not really a jpeg"),
     r"cl_dataset/Grounding/test/0\.jpg: not a readable image \(UnidentifiedImageError: .*record 0 of .*Grounding/test"),
])
def test_validation_failures_name_the_file(coin: Path, breakage, message: str) -> None:
    breakage(coin)
    with pytest.raises(UserError, match=message) as info:
        _load(coin)
    assert "\n" not in str(info.value)


def test_a_zero_byte_image_stops_the_run_before_anything_is_written(coin: Path, tmp_path: Path, capsys) -> None:
    (coin / "cl_dataset" / "VQAv2" / "test" / "2.jpg").write_bytes(b"")
    out = tmp_path / "run"
    assert main(["run", "--method", "lora-ft", "--benchmark", "coin", "--data-root", str(coin), "--backbone", BACKBONE,
                 "--preset", "quick", "--output", str(out), "--quiet", "--logger", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "VQAv2/test/2.jpg: not a readable image (empty file" in err
    assert not out.exists()


def test_scienceqa_counts_every_test_problem_absent_ones_as_failed(coin: Path) -> None:
    """CoIN's scorer iterates pid_splits["test"]: a problem test.json lacks scores as failed (scienceqa/coin);
    scienceqa/coin_skip_absent leaves it out, as the harness used to."""
    from mcit_bench.benchmark import with_scorer_variants
    from mcit_bench.scorers import get_scorer

    _set_json(coin_task_dir(coin, "ScienceQA") / "test.json", lambda d: d.pop(0))  # pid "10" is now absent
    bench = _load(coin, strict_counts=False)
    assert bench.info["absent_test_records"] == {"ScienceQA": 1}
    records = bench.test_split("ScienceQA").remove_columns("image").to_list()
    assert [(r["uid"], r["absent"]) for r in records] == [
        ("coin/ScienceQA/test/11", False), ("coin/ScienceQA/test/12", False), ("coin/ScienceQA/test/10", True)]
    assert records[2]["target"] == "A" and records[2]["choices"] == ["cat", "trout"]
    predictions = ["B", "A", None]  # both asked questions right; the absent one never asked
    spec = bench.task("ScienceQA")
    coin_result = get_scorer(spec.scorer, spec.scorer_variant).score(predictions, records)
    assert spec.scorer_variant == "coin" and coin_result.score == pytest.approx(200 / 3)
    assert coin_result.details["n_absent"] == 1 and coin_result.details["n_scored"] == 3
    skip = with_scorer_variants(bench, {"ScienceQA": "coin_skip_absent"}).task("ScienceQA")
    assert get_scorer(skip.scorer, skip.scorer_variant).score(predictions, records).score == pytest.approx(100.0)
    with pytest.raises(UserError, match=r"--scorer-variant ScienceQA=skip: .*known variants: coin, coin_skip_absent"):
        with_scorer_variants(bench, {"ScienceQA": "skip"})
    with pytest.raises(UserError, match=r"--scorer-variant Science=coin: .*has no task 'Science'"):
        with_scorer_variants(bench, {"Science": "coin"})


def test_quick_preset_caps_new_tokens_and_default_keeps_the_native_budgets() -> None:
    from mcit_bench.benchmarks.coin import TASKS
    from mcit_bench.config import resolve_hparams
    from mcit_bench.engine.evaluation import decoding_budget

    quick = resolve_hparams({}, "quick", {}, "lora-ft")["eval_max_new_tokens"]
    default = resolve_hparams({}, "default", {}, "lora-ft")["eval_max_new_tokens"]
    assert quick == 32 and default is None
    budgets = {t.name: (decoding_budget(t, quick), decoding_budget(t, default)) for t in TASKS}
    assert budgets["ScienceQA"] == (32, 1024) and budgets["VizWiz"] == (32, 128)
    short = TASKS[0].__class__("short", "short", "exact_match", max_new_tokens=6)
    assert decoding_budget(short, quick) == 6  # a cap, never a raise


def test_scienceqa_subset_needs_relaxed_counts(coin: Path) -> None:
    _set_json(coin_task_dir(coin, "ScienceQA") / "test.json", lambda d: d.pop())
    with pytest.raises(UserError, match="strict_counts=false"):
        _load(coin)
    relaxed = _load(coin, strict_counts=False).test_split("ScienceQA")
    assert len(relaxed) == 3 and list(relaxed["absent"]) == [False, False, True]  # still counted, as CoIN


def test_convert_and_read_back(coin: Path, tmp_path: Path) -> None:
    out = tmp_path / "canonical"
    assert main(["convert", "coin", "--data-root", str(coin), "--output", str(out)]) == 0
    meta = json.loads((out / "benchmark.json").read_text())
    assert meta["tasks"] == list(COIN_TASKS)
    assert any(s["path"].endswith("ScienceQA/problems.json") for s in meta["sources"])
    native, canonical = _load(coin), _load(out)
    for task in COIN_TASKS:
        assert native.test_split(task).remove_columns("image").to_list() == \
            canonical.test_split(task).remove_columns("image").to_list()
    assert canonical.test_split("ScienceQA")[1]["image"] is None


def test_quick_run_with_text_only_questions(coin: Path, tmp_path: Path, tiny_backbone: Path, capsys) -> None:
    _set_json(coin_task_dir(coin, "ScienceQA") / "test.json", lambda d: d.pop(1))  # pid "11" absent from test.json
    out = tmp_path / "run"
    assert main(["run", "--method", "lora-ft", "--order", "1", "--benchmark", "coin", "--data-root", str(coin),
                 "--backbone", BACKBONE, "--preset", "quick", "--output", str(out), "--logger", "none",
                 "--set", "strict_counts=false", "--set", "eval_max_new_tokens=2"]) == 0
    printed = capsys.readouterr().out
    assert "answers capped at 2 new tokens" in printed  # in the plan and in the summary
    assert "absent from the test files (counted by the native scorer, never asked): ScienceQA 1 (coin)" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["tasks"] == list(COIN_TASKS)
    assert summary["scorers"]["Grounding"]["variant"] == "coin_compat"
    assert summary["absent_test_records"] == {"ScienceQA": 1}
    assert summary["decoding"] == {"cap": 2, "max_new_tokens": {t: 2 for t in COIN_TASKS}}
    preds = [json.loads(p) for p in (out / "predictions" / "stage8" / "ScienceQA.jsonl").read_text().splitlines()]
    assert [p["uid"] for p in preds] == ["coin/ScienceQA/test/10", "coin/ScienceQA/test/12", "coin/ScienceQA/test/11"]
    assert preds[2]["text"] is None and all(isinstance(p["text"], str) for p in preds[:2])  # absent: never asked
    cell = json.loads((out / "state.json").read_text())["cells"]["8"]["ScienceQA"]
    assert cell["details"]["n_absent"] == 1 and cell["details"]["n"] == 3  # counted, as failed


def test_sweep_plans_coins_own_orders_with_its_data_root(coin: Path, tmp_path: Path, capsys) -> None:
    assert main(["sweep", "--benchmark", "coin", "--data-root", str(coin), "--methods", "lora-ft", "--orders", "all",
                 "--backbone", BACKBONE, "--preset", "quick", "--root", str(tmp_path / "runs"), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "would run 1 of 1" in plan and "coin/lora-ft/order1-seed0" in plan  # CoIN has one order, not six
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("image", ["../../../x.png", "/etc/hostname", "escape/x.png"])
def test_image_paths_outside_the_data_root_are_refused(coin: Path, tmp_path: Path, image: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (coin / "cl_dataset" / "escape").symlink_to(outside)  # a symlink out of the root counts as outside
    _set_json(coin_task_dir(coin, "OCRVQA") / "test.json", lambda d: d[2].update(image=image))
    with pytest.raises(UserError, match=rf"OCRVQA/test\.json: record 2: image '{re.escape(image)}' is outside the "
                                        r"image root") as info:
        _load(coin)
    assert "\n" not in str(info.value)
