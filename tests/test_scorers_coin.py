"""CoIN scorers, each with hand-computed expectations (the arithmetic is in the comments)."""
from __future__ import annotations

import pytest

from mcit_bench.errors import UserError
from mcit_bench.scorers import get_scorer
from mcit_bench.scorers.grounding_iou import iou, parse_box_coin, xywh_to_padded_square
from mcit_bench.scorers.vqa_normalize import normalize_vqa_answer
from mcit_bench.scorers.vqa_soft import soft_accuracy
from scorer_records import rec

# ---------------------------------------------------------------- scienceqa
SQA_CHOICES = ["ice", "water", "steam"]  # A-C
SQA_PREDS = ["B", "B. water", "The answer is B.", "b", "I think B", "D", None]


def test_scienceqa_coin():
    recs = [rec("B", choices=SQA_CHOICES) for _ in SQA_PREDS]
    res = get_scorer("scienceqa", "coin").score(SQA_PREDS, recs)
    # "B" exact option; "B. water" -> "<letter>. " rule; "The answer is B." -> first one-char
    # word is "B"; "b" -> first one-char word "b" upper-cased -> B; "I think B" -> first one-char
    # word is "I" -> wrong; "D" is an option of A-E but beyond the 3 choices -> wrong;
    # None -> wrong and still counted.  4 / 7.
    assert res.per_sample == [100.0, 100.0, 100.0, 100.0, 0.0, 0.0, 0.0]
    assert res.score == pytest.approx(400.0 / 7)
    assert res.details["n_scored"] == 7 and res.details["n_missing"] == 1


def test_scienceqa_absent_problems_fail_in_coin_and_are_left_out_in_coin_skip_absent():
    # the last two problems are absent from test.json (never asked: prediction None)
    recs = [rec("B", choices=SQA_CHOICES) for _ in range(3)] + [{**rec("A"), "absent": True}] * 2
    preds = ["B", "B. water", "C", None, None]
    coin = get_scorer("scienceqa", "coin").score(preds, recs)
    # CoIN counts every test problem: 2 right of 5
    assert coin.score == pytest.approx(40.0) and coin.details["n_absent"] == 2 and coin.details["n_scored"] == 5
    skip = get_scorer("scienceqa", "coin_skip_absent").score(preds, recs)
    # absent ones left out: 2 right of 3
    assert skip.score == pytest.approx(200.0 / 3) and skip.details["n_scored"] == 3
    assert skip.per_sample == [100.0, 100.0, 0.0, None, None]
    # an absent problem never counts as right, whatever text it is paired with (e.g. shifted baselines)
    assert get_scorer("scienceqa", "coin").score(["A"], [{**rec("A"), "absent": True}]).score == 0.0


def test_scienceqa_regex():
    recs = [rec("B", choices=SQA_CHOICES) for _ in SQA_PREDS]
    res = get_scorer("scienceqa", "regex").score(SQA_PREDS, recs)
    # "B", "B. water", "The answer is B." right; "b" matches no rule (options are upper-case,
    # no "The answer is") -> wrong; "I think B" wrong; "D" beyond choices; None left out of the
    # denominator as SEFE divides by the number of predictions.  3 / 6 = 50 %.
    assert res.per_sample == [100.0, 100.0, 100.0, 0.0, 0.0, 0.0, None]
    assert res.score == pytest.approx(50.0)
    assert res.details["n_scored"] == 6


@pytest.mark.parametrize("pred, ok", [
    ("The answer is B", False),                   # "." in the pattern needs one more character
    ("The answer is B.The answer is B.", False),  # two matches -> FAILED
    ("Because ... The answer is B!", True),       # "." matches any character
])
def test_scienceqa_regex_native_quirks(pred, ok):
    res = get_scorer("scienceqa", "regex").score([pred], [rec("B", choices=SQA_CHOICES)])
    assert res.score == (100.0 if ok else 0.0)


def test_scienceqa_index_target():
    # problems.json stores the answer as an index: "1" -> B.
    res = get_scorer("scienceqa").score(["B", "A"], [rec("1", choices=SQA_CHOICES)] * 2)
    assert res.score == pytest.approx(50.0)


# ---------------------------------------------------------------- vqa_soft (TextVQA)
TEN = ["2", "two", "Two", "cat", "the cat", "a cat", "Cat.", "cats", "cats", "dog"]
# normalised: 2 2 2 cat cat cat cat cats cats dog


def test_soft_accuracy_leave_one_out():
    # "2" matches 3 answers: leaving one of those out leaves 2 -> 2/3 (x3); leaving any of the
    # other 7 out leaves 3 -> 1 (x7); (3 * 2/3 + 7) / 10 = 0.9.
    assert soft_accuracy("2", TEN) == pytest.approx(0.9)
    # "A cat." -> "cat": 4 matches, every subset keeps >= 3 -> 1.0.
    assert soft_accuracy("A cat.", TEN) == pytest.approx(1.0)
    # "cats": 2 matches: (2 * 1/3 + 8 * 2/3) / 10 = 0.6.
    assert soft_accuracy("cats", TEN) == pytest.approx(0.6)
    # "dog": 1 match: (1 * 0 + 9 * 1/3) / 10 = 0.3.
    assert soft_accuracy("dog", TEN) == pytest.approx(0.3)


def test_vqa_soft_scorer():
    preds = ["2", "A cat.", "cats", "dog", "bird"]
    res = get_scorer("vqa_soft").score(preds, [rec("", references=TEN) for _ in preds])
    # (90 + 100 + 60 + 30 + 0) / 5 = 56
    assert res.score == pytest.approx(56.0)
    assert res.per_sample == pytest.approx([90.0, 100.0, 60.0, 30.0, 0.0])
    assert res.details["n_not_10_refs"] == 0


def test_vqa_soft_needs_references():
    with pytest.raises(UserError):
        get_scorer("vqa_soft").score(["2"], [rec("2", references=[])])


@pytest.mark.parametrize("raw, norm", [
    ("Two", "2"), ("None", "0"), ("ten", "10"),
    ("The Cat", "cat"), ("an apple", "apple"),
    ("dont", "don't"), ("Don't", "don't"), ("whats", "what's"),
    ("what's", "what 's"),           # "'s" is split off first
    ("3,000", "3000"),               # commas deleted
    ("yes!", "yes"),                 # "!" not next to a space -> replaced by a space
    ("hello - world", "hello world"),  # "-" next to a space -> deleted
    ("e-mail", "e mail"),            # "-" inside a word -> a space
    ("3.5", "3.5"), ("end.", "end"),  # a period survives only before a digit
    ("(left)", "left"), ("x/y", "x y"),
    ("." * 40, "." * 8),             # re.UNICODE passed as count: only 32 periods go
])
def test_evalai_normaliser(raw, norm):
    assert normalize_vqa_answer(raw) == norm


# ---------------------------------------------------------------- imagenet_substring
def test_imagenet_substring():
    preds = ["golden retriever", "a golden retriever dog", "retriever", "Golden Retriever", "", None]
    res = get_scorer("imagenet_substring").score(preds, [rec("golden retriever") for _ in preds])
    # equal; target inside pred; pred inside target; case differs -> wrong;
    # "" is inside every target (native quirk) -> right; None -> wrong.  4 / 6.
    assert res.per_sample == [100.0, 100.0, 100.0, 0.0, 100.0, 0.0]
    assert res.score == pytest.approx(400.0 / 6)
    assert res.details["n_empty"] == 1


# ---------------------------------------------------------------- gqa, vqa_exact, ocrvqa
def test_gqa():
    preds = ["Yes.", "yes..", "yes ", "No", "left."]
    recs = [rec("yes"), rec("yes"), rec("yes"), rec("no"), rec("right")]
    # rstrip('.') then lower: yes, yes, "yes " (no whitespace strip) -> wrong, no, left != right.
    res = get_scorer("gqa").score(preds, recs)
    assert res.per_sample == [100.0, 100.0, 0.0, 100.0, 0.0]
    assert res.score == pytest.approx(60.0)


def test_vqa_exact():
    preds = ["Yes", " no ", "2", "two", "yes."]
    recs = [rec("yes"), rec("no"), rec("2"), rec("2"), rec("yes")]
    # case-insensitive equality: yes, no, 2 right; "two" != "2" (no normaliser); "yes." keeps
    # its period -> wrong.  3 / 5.
    res = get_scorer("vqa_exact").score(preds, recs)
    assert res.score == pytest.approx(60.0)


def test_ocrvqa():
    preds = ["Harry Potter", "unanswerable", "Unanswerable", "Hobbit (Unanswerable)", "harry potter "]
    targets = ["harry potter", "unanswerable", "Unanswerable", "Hobbit (Unanswerable)", "harry potter"]
    # lower-case equality: right; "unanswerable" has no capital U so it is not caught -> right;
    # anything containing "Unanswerable" is wrong even when equal to the target (x2);
    # trailing space -> wrong.  2 / 5.
    res = get_scorer("ocrvqa").score(preds, [rec(t) for t in targets])
    assert res.per_sample == [100.0, 100.0, 0.0, 0.0, 0.0]
    assert res.score == pytest.approx(40.0)


# ---------------------------------------------------------------- grounding_iou
GOLD = [0.1, 0.1, 0.5, 0.5]  # area 0.16
BOX_PREDS = [
    "[0.1, 0.1, 0.5, 0.55]",
    "[0.1, 0.1, 0.5, 0.5]",
    " [0.1, 0.1, 0.5, 0.55]",
    "[1.0, 0.1, 0.5, 0.55]",
    "no box here",
    "[0.3, 0.3, 0.7, 0.75]",
]


def test_parse_box_coin_drops_first_and_last_character():
    # brackets removed, then text[1:-1]: "0.1, 0.1, 0.5, 0.55" -> ".1, 0.1, 0.5, 0.5"
    assert parse_box_coin("[0.1, 0.1, 0.5, 0.55]") == [0.1, 0.1, 0.5, 0.5]
    assert parse_box_coin("[0.1, 0.1, 0.5, 0.5]") == [0.1, 0.1, 0.5, 0.0]
    assert parse_box_coin("[0.1, 0.1, 0.5]") is None


def test_grounding_coin_compat():
    res = get_scorer("grounding_iou", "coin_compat").score(
        BOX_PREDS, [rec("", bbox=GOLD, image_size=[640, 480]) for _ in BOX_PREDS])
    # 1: -> [.1,.1,.5,.5] IoU 1 -> right.
    # 2: -> [.1,.1,.5,0.] (last digit lost) y2 < y1 -> intersection 0 -> wrong.
    # 3: leading space dropped, then as 1 -> right.
    # 4: "1.0" -> ".0" = 0 -> [0,.1,.5,.5]: inter .4*.4 = .16, union .5*.4 = .2 -> IoU .8 -> right.
    # 5: unparseable -> wrong.
    # 6: -> [.3,.3,.7,.7]: inter .2*.2 = .04, union .16+.16-.04 = .28 -> .14 -> wrong.   3 / 6.
    assert res.per_sample == [100.0, 0.0, 100.0, 100.0, 0.0, 0.0]
    assert res.score == pytest.approx(50.0)


def test_grounding_robust():
    res = get_scorer("grounding_iou", "robust").score(
        BOX_PREDS, [rec("", bbox=GOLD) for _ in BOX_PREDS])
    # 1: [.1,.1,.5,.55]: inter .4*.4 = .16, union .16+.18-.16 = .18 -> .889 -> right.
    # 2: exact -> 1 -> right.   3: as 1 -> right.
    # 4: x ordered (.5, 1.0): no x overlap with (.1, .5) -> 0 -> wrong.   5: wrong.
    # 6: [.3,.3,.7,.75]: inter .04, union .16+.18-.04 = .30 -> .133 -> wrong.   3 / 6.
    assert res.per_sample == [100.0, 100.0, 100.0, 0.0, 0.0, 0.0]
    assert res.score == pytest.approx(50.0)


def test_grounding_iou_threshold_is_strict_and_string_gold_is_accepted():
    # gold the whole square, prediction its top half: IoU = 0.5 exactly -> not > 0.5.
    res = get_scorer("grounding_iou", "robust").score(
        ["[0, 0, 1, 0.5]", "[0, 0, 1, 0.51]"],
        [rec("", bbox="[0,0,1,1]", image_size=[640, 480])] * 2)
    assert res.per_sample == [0.0, 100.0]
    assert iou([0, 0, 1, 0.5], [0, 0, 1, 1]) == 0.5


def test_grounding_bad_gold_is_user_error():
    with pytest.raises(UserError, match="bbox"):
        get_scorer("grounding_iou").score(["[0,0,1,1]"], [rec("", bbox=[1, 2, 3])])


def test_xywh_to_padded_square():
    # wide 200x100 image: side 200, pad 50 on top; box x50 y10 w100 h20
    # -> [50/200, (10+50)/200, 150/200, (30+50)/200]
    assert xywh_to_padded_square([50, 10, 100, 20], [200, 100]) == pytest.approx([0.25, 0.3, 0.75, 0.4])
    # tall 100x200 image: pad 50 on the left
    assert xywh_to_padded_square([10, 50, 20, 100], [100, 200]) == pytest.approx([0.3, 0.25, 0.4, 0.75])
