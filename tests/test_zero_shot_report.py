"""The zero-shot row's chance levels: uniform guessing and the shuffled baseline of the model's own answers."""
from __future__ import annotations

import random

import pytest

from mcit_bench.benchmark import TaskSpec
from mcit_bench.engine.evaluation import shuffled_baseline, zero_shot_report
from mcit_bench.scorers import get_scorer

LETTERS = "ABCD"


def _mc_records(targets: str) -> list[dict]:
    return [{"uid": f"u{i}", "target": t, "choices": ["w", "x", "y", "z"]} for i, t in enumerate(targets)]


def test_a_constant_answer_is_never_above_its_shuffled_level():
    records = _mc_records("ABCDCCAB")  # C is 3 of 8
    scorer = get_scorer("choice_letter", "strict")
    answers = ["C"] * len(records)
    own = scorer.score(answers, records).score
    assert own == pytest.approx(37.5)
    assert shuffled_baseline(scorer, answers, records, own) == {"shuffled": pytest.approx(37.5), "p_value": 1.0,
                                                                   "shifts": 7}


def test_right_answers_beat_every_shift():
    records = _mc_records("ABCDABCDDCBA" * 2)
    scorer = get_scorer("choice_letter", "strict")
    answers = [r["target"] for r in records]
    base = shuffled_baseline(scorer, answers, records, 100.0, shifts=3)
    # shift 1 of ...ABCD... matches nowhere but at the D|C and A|A seams; every shift stays far below 100
    expected = [sum(answers[i] == records[(i + k) % 24]["target"] for i in range(24)) / 24 * 100 for k in (1, 2, 3)]
    assert base["shuffled"] == pytest.approx(sum(expected) / 3)
    assert base["p_value"] == pytest.approx(1 / 4)  # 3 shifts: the smallest p-value is 1/4
    assert shuffled_baseline(scorer, answers, records, 100.0)["p_value"] == pytest.approx(1 / 10)  # shift 12 = a period
    rng = random.Random(0)
    aperiodic = _mc_records("".join(rng.choice(LETTERS) for _ in range(40)))
    right = [r["target"] for r in aperiodic]
    assert shuffled_baseline(scorer, right, aperiodic, 100.0)["p_value"] == pytest.approx(1 / 20)  # beats all 19


def test_shuffled_baseline_needs_two_records():
    scorer = get_scorer("choice_letter", "strict")
    assert shuffled_baseline(scorer, ["A"], _mc_records("A"), 100.0) == {"shuffled": None, "p_value": None,
                                                                              "shifts": 0}


def test_captions_that_name_the_image_beat_their_shuffled_level():
    words = ["red circle", "blue square", "green cross", "yellow triangle", "purple circle", "red cross"]
    records = [{"uid": str(i), "target": f"a {w}", "references": [f"a photo of a {w}", f"a {w} in a photo"]}
               for i, w in enumerate(words)]
    scorer = get_scorer("caption", "synthetic")
    answers = [f"a {w}" for w in words]
    own = scorer.score(answers, records).score
    base = shuffled_baseline(scorer, answers, records, own)
    assert own > base["shuffled"] + 10 and base["p_value"] == pytest.approx(1 / 6)  # 5 shifts, all below


def test_report_marks_above_chance_only_above_every_level():
    tasks = [TaskSpec("mc", "x", "choice_letter", "strict", chance=25.0), TaskSpec("cap", "y", "caption", "synthetic"),
             TaskSpec("mc2", "x", "choice_letter", "strict", chance=25.0), TaskSpec("unseen", "z", "exact_match")]
    cells = {"mc": {"score": 40.0, "details": {"shuffled": 40.0, "p_value": 1.0}},     # a constant letter
             "cap": {"score": 20.0, "details": {"shuffled": 8.0, "p_value": 0.05}},    # names what it sees
             "mc2": {"score": 30.0, "details": {"shuffled": 22.0, "p_value": 0.05}},   # above both
             "mc3": {"score": 24.0, "details": {"shuffled": 18.0, "p_value": 0.05}}}   # below uniform chance
    tasks.append(TaskSpec("mc3", "x", "choice_letter", "strict", chance=25.0))
    report = zero_shot_report(cells, tasks)
    assert set(report) == {"mc", "cap", "mc2", "mc3"}  # no cell, no entry
    assert [report[t]["above_chance"] for t in ("mc", "cap", "mc2", "mc3")] == [False, True, True, False]
    assert report["cap"]["chance"] is None and report["cap"]["shuffled"] == 8.0


def test_a_test_set_too_small_for_the_shift_test_is_said_so():
    from mcit_bench.cli import _format_summary

    tasks = [TaskSpec("mc", "x", "choice_letter", "strict", chance=25.0), TaskSpec("cap", "y", "caption", "synthetic")]
    scorer = get_scorer("choice_letter", "strict")
    records = _mc_records("ABCDCCAB")  # the quick preset's 8 records: 7 shifts, p >= 1/8
    right = shuffled_baseline(scorer, [r["target"] for r in records], records, 100.0)
    assert right["p_value"] == pytest.approx(1 / 8)  # every answer right, and still not provably above chance
    small = {"mc": {"score": 100.0, "details": right}, "cap": {"score": 20.0, "details": right}}
    report = zero_shot_report(small, tasks)
    assert [report[t]["judgeable"] for t in ("mc", "cap")] == [False, False]
    line = _format_summary({"zero_shot": report}).splitlines()[-1]
    assert line.startswith("zero-shot above chance on 0 of 2 tasks (cannot be judged on every task: 7 shifted")
    assert "p=0.12 > 0.05" in line
    big = _mc_records("ABCD" * 10)
    judged = shuffled_baseline(scorer, [r["target"] for r in big], big, 100.0)
    full = zero_shot_report({"mc": {"score": 100.0, "details": judged}, "cap": {"score": 20.0, "details": right}}, tasks)
    assert full["mc"]["judgeable"] is True
    assert "cannot be judged on cap:" in _format_summary({"zero_shot": full}).splitlines()[-1]
