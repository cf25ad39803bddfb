"""Scorer interface, registry and the UCIT / generic accuracy scorers, with hand-computed values."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mcit_bench

from mcit_bench.errors import UserError
from mcit_bench.scorers import Scorer, ScoreResult, get_scorer, list_scorers
from scorer_records import rec

EXPECTED = {
    "exact_match": ["ucit"],
    "choice_letter": ["strict", "regex"],
    "number": ["first_int"],
    "caption": ["auto", "coco", "python", "synthetic"],
    "scienceqa": ["coin", "coin_skip_absent", "regex"],
    "vqa_soft": ["textvqa"],
    "imagenet_substring": ["coin"],
    "gqa": ["coin"],
    "vqa_exact": ["coin"],
    "grounding_iou": ["coin_compat", "robust"],
    "ocrvqa": ["coin"],
}


# ---------------------------------------------------------------- registry and interface
def test_list_scorers_names_and_variants():
    assert list_scorers() == dict(sorted(EXPECTED.items()))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_get_scorer_default_variant_is_first(name):
    scorer = get_scorer(name)
    assert isinstance(scorer, Scorer)
    assert scorer.name == name
    assert scorer.variant == EXPECTED[name][0]
    for variant in EXPECTED[name]:
        assert get_scorer(name, variant).variant == variant


def test_unknown_scorer_lists_known_ones():
    with pytest.raises(UserError) as err:
        get_scorer("bleu9")
    assert "bleu9" in str(err.value)
    assert "exact_match" in str(err.value) and "grounding_iou" in str(err.value)


def test_unknown_variant_lists_known_ones():
    with pytest.raises(UserError) as err:
        get_scorer("scienceqa", "fuzzy")
    assert "coin" in str(err.value) and "regex" in str(err.value)


def test_length_mismatch_and_empty_input_are_user_errors():
    scorer = get_scorer("exact_match")
    with pytest.raises(UserError):
        scorer.score(["a"], [rec("a"), rec("b")])
    with pytest.raises(UserError):
        scorer.score([], [])
    with pytest.raises(UserError):
        scorer.score([3], [rec("3")])  # type: ignore[list-item]


def test_missing_target_is_a_user_error_naming_the_uid():
    with pytest.raises(UserError, match="u7"):
        get_scorer("exact_match").score(["a"], [{"uid": "u7", "target": None}])


def test_import_does_not_load_torch_or_pycocoevalcap():
    code = ("import sys, mcit_bench.scorers; "
            "print([m for m in ('torch', 'numpy', 'pycocoevalcap') if m in sys.modules])")
    # run against this checkout, not whichever mcit_bench an editable install points at
    root = str(Path(mcit_bench.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- exact_match (UCIT)
def test_exact_match_ucit():
    preds = ["cat", " DOG ", "Cat.", "bird", None]
    recs = [rec("Cat"), rec("dog"), rec("cat"), rec("birds"), rec("x")]
    res = get_scorer("exact_match").score(preds, recs)
    # cat==CAT ok; " DOG " stripped == DOG ok; "Cat." keeps its period -> wrong;
    # bird != birds; None -> wrong.  2 / 5 = 40 %.
    assert res.score == pytest.approx(40.0)
    assert res.per_sample == [100.0, 100.0, 0.0, 0.0, 0.0]
    assert res.details == {"n": 5, "n_correct": 2, "n_missing": 1}
    assert isinstance(res, ScoreResult)


# ---------------------------------------------------------------- choice_letter
CHOICES = ["red", "green", "blue", "pink"]  # letters A-D


@pytest.mark.parametrize("pred, ok", [
    ("B", True),                  # the letter itself
    ("b", True),                  # a lone letter, any case
    ("B.", True),                 # delimited
    ("B) green", True),
    ("(B) green", True),
    ("B: green", True),
    (" B ", True),                # stripped first
    ("Blue", False),              # a word, not a letter
    ("A cat", False),             # capital + word reads as an article
    ("The answer is B.", False),  # strict does not search
    ("green", False),
    ("C", False),                 # wrong letter
])
def test_choice_letter_strict(pred, ok):
    res = get_scorer("choice_letter", "strict").score([pred], [rec("B", choices=CHOICES)])
    assert res.score == (100.0 if ok else 0.0)


@pytest.mark.parametrize("pred, ok", [
    ("The answer is B.", True),
    ("Reasoning... the answer is (B).", True),
    ("The answer is: B", True),
    ("The answer is Blue.", False),          # X must be a whole-word capital; no fallback letter
    ("B. because green", True),              # fallback: leading letter
    ("The answer is C. No wait, B", False),  # the first phrase wins
])
def test_choice_letter_regex(pred, ok):
    res = get_scorer("choice_letter", "regex").score([pred], [rec("B", choices=CHOICES)])
    assert res.score == (100.0 if ok else 0.0)


def test_choice_letter_letter_outside_choices_is_wrong_and_targets_may_be_indices():
    # Target "4" is index 4 -> "E"; with only 4 choices (A-D) a parsed "E" is out of range.
    res = get_scorer("choice_letter").score(["E", "E", "c"], [
        rec("4", choices=CHOICES),        # E beyond D -> wrong
        rec("E", choices=None),           # no choices: any letter allowed -> right
        rec("(C)", choices=CHOICES),      # target written "(C)" -> C; "c" -> C -> right
    ])
    # 2 / 3 = 66.67 %
    assert res.score == pytest.approx(200.0 / 3)


def test_choice_letter_bad_target_is_user_error():
    with pytest.raises(UserError):
        get_scorer("choice_letter").score(["A"], [rec("green", choices=CHOICES)])


# ---------------------------------------------------------------- number
def test_number_first_int():
    preds = ["3", "There are 3 objects left.", "3.7", "-2", "three", "12 or 3", "03"]
    recs = [rec("3"), rec("3"), rec("3"), rec("-2"), rec("3"), rec("3"), rec(" 3 ")]
    res = get_scorer("number").score(preds, recs)
    # 3 ok; first int 3 ok; "3.7" -> 3 ok; -2 ok; "three" no digits -> wrong;
    # "12 or 3" -> 12 wrong; "03" -> 3 == int(" 3 ") ok.  5 / 7.
    assert res.per_sample == [100.0, 100.0, 100.0, 100.0, 0.0, 0.0, 100.0]
    assert res.score == pytest.approx(500.0 / 7)


def test_number_non_integer_target_is_user_error():
    with pytest.raises(UserError, match="not an integer"):
        get_scorer("number").score(["3"], [rec("three")])
